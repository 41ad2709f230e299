"""Every experiment schema in one place, one file per part of the YAML:

* ``base.py``: ``Strict`` and the loader (``load_config``, ``validate``, ``--set``);
* ``data.py``, ``models.py``, ``teacher.py``, ``run.py`` (train, halting, loggers),
  ``distill.py`` (losses): the sections the commands share;
* ``study.py``, ``split.py``: the study and split-computing experiments.

Plugin settings (losses, sources, halting rules, loggers) are owned by their
registry entries; these schemas dispatch each tagged entry to its registry.
``edgedistill.config`` re-exports the shared names; the study and split schemas are
imported from their own modules (they import the training code's techniques).
"""

from edgedistill.config.base import (  # noqa: F401
    Strict,
    _allowed_keys,
    apply_overrides,
    dump_config,
    format_validation_error,
    load_config,
    plugin_paths,
    read_text_file,
    read_yaml_mapping,
    short_repr,
    validate,
    yaml_problem,
)
from edgedistill.config.data import (  # noqa: F401
    AugmentConfig,
    DataConfig,
)
from edgedistill.config.distill import (  # noqa: F401
    DistillExperiment,
    LossConfig,
)
from edgedistill.config.models import (  # noqa: F401
    ModelConfig,
    StudentConfig,
    check_model_fields,
    model_mapping,
)
from edgedistill.config.run import (  # noqa: F401
    PLUGINS_HELP,
    HaltingRule,
    LoggerConfig,
    OptimizerConfig,
    RunBase,
    ScheduleConfig,
    TrainConfig,
    TrainExperiment,
    import_plugins,
)
from edgedistill.config.teacher import (  # noqa: F401
    AutoscaleSettings,
    CacheConfig,
    PoolConfig,
    ReplicaSpec,
    TeacherConfig,
)

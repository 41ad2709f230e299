"""Knowledge-transfer study: student shapes x transfer techniques x seeds on one teacher,
compared by accuracy, convergence speed and gain over the same student trained alone.

``run_study(config, out, resume)`` runs or resumes a study YAML; ``write_report``
rebuilds the report of a study folder; ``PRESETS`` lists the named techniques.
"""

from edgedistill.study.config import StudyConfig, load_study
from edgedistill.study.run import CellsFailed, run_study
from edgedistill.study.techniques import PRESETS, expand_name, resolve_techniques

__all__ = ["PRESETS", "CellsFailed", "StudyConfig", "expand_name", "load_study",
           "resolve_techniques", "run_study"]

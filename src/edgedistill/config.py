"""Pydantic schemas for every experiment YAML, and the loader that turns their
validation errors into one clear line (offending key, allowed values)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edgedistill.errors import UsageError


class Strict(BaseModel):
    """Base of every schema: unknown keys are errors, and so are inf and nan in any float
    field (YAML's ``.inf`` would otherwise pass ``gt=0`` and train on garbage)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class AugmentConfig(Strict):
    enabled: bool = True
    crop_pad: int | None = Field(None, ge=0, description="None: the dataset's default")
    hflip: bool | None = None


class DataConfig(Strict):
    dataset: str = "fashion_mnist"
    root: str | None = None
    limit_train: int | None = Field(None, gt=0)
    limit_test: int | None = Field(None, gt=0)
    val_split: int | None = Field(
        None, gt=0, description="hold out this many training images (class-stratified, the "
        "same ones for every seed) as a validation set; halting rules then read validation "
        "metrics, so the test set never steers training")
    batch_size: int = Field(128, gt=0)
    eval_batch_size: int = Field(512, gt=0)
    augment: AugmentConfig = AugmentConfig()
    num_draws: int | None = Field(None, gt=0, description="augmentation draws reused cyclically")
    options: dict[str, Any] = {}
    streaming: bool | None = Field(
        None, description="read samples from disk while training (imagefolder, webdataset); "
        "unset: only when the decoded set would exceed memory_budget_gb")
    memory_budget_gb: float = Field(4.0, gt=0, description="largest decoded set held in "
                                    "memory, in GiB")
    workers: int = Field(2, ge=0, description="DataLoader worker processes when streaming")
    prefetch: int = Field(2, ge=1, description="batches each worker prepares ahead (streaming "
                          "memory is about workers x prefetch batches)")
    transform: str = Field("imagenet", description="streaming per-sample recipe: imagenet "
                           "(RandomResizedCrop + flip; resize + centre crop) or fit (the "
                           "in-memory imagefolder's fit and pad-crop + flip)")
    transform_options: dict[str, Any] = {}
    on_corrupt: Literal["skip", "error"] = Field(
        "error", description="an unreadable image when streaming: stop naming it, or skip it "
        "with a warning naming it")
    mean: list[float] | None = Field(None, description="per-channel mean on the 0-1 scale; "
                                     "unset: the train split's (streaming: ImageNet's)")
    std: list[float] | None = None
    num_classes: int | None = Field(None, gt=0, description="the classes the data must have "
                                    "(checked when it loads); lets `edgedistill check` build "
                                    "the models before the data is fetched")

    @model_validator(mode="after")
    def _check_streaming(self):
        if self.transform != "imagenet" or self.transform_options:  # the default needs no
            from edgedistill.data.transforms import TRANSFORMS  # check, nor torch imported

            TRANSFORMS.validate_settings(self.transform, self.transform_options,
                                         "data.transform_options")
        if (self.mean is None) != (self.std is None) or (
                self.mean is not None and (len(self.mean) != len(self.std)
                                           or min(self.std) <= 0)):
            raise ValueError("data.mean and data.std go together, one value per channel, "
                             "std > 0")
        return self


class ModelConfig(Strict):
    """A model: a zoo name, ``torchvision:NAME`` / ``timm:NAME``, or a user's function
    (``factory: my_pkg.nets:make_model`` or ``path/to/file.py:make_model``), called with
    ``kwargs``; ``weights`` or ``pretrained`` give it trained weights (models/foreign.py)."""

    name: str | None = None
    factory: str | None = Field(None, description="package.module:function or file.py:function")
    kwargs: dict[str, Any] = {}
    weights: str | None = Field(None, description=".pt/.pth state dict, full checkpoint or "
                                ".safetensors; module./_orig_mod./model. prefixes are stripped")
    pretrained: bool = Field(False, description="torchvision:/timm: published weights "
                             "(downloaded; needs a network the first time)")
    strict: bool = Field(True, description="every weight must fit (false: load those that do)")

    @model_validator(mode="after")
    def _one_model(self) -> ModelConfig:
        check_model_fields(self, "name")
        return self


def model_mapping(raw: dict) -> ModelConfig:
    """A mapping as ``ModelConfig``, its problems in one ``ValueError`` naming the keys (a
    union field would otherwise report every member's complaint)."""
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"])
            if e["type"] == "extra_forbidden":
                problems.append(f"unknown key {key!r}; allowed keys here: "
                                f"{', '.join(ModelConfig.model_fields)}")
            else:
                problems.append(f"{key + ': ' if key else ''}{e['msg'].removeprefix('Value error, ')}")
        raise ValueError("; ".join(problems)) from None


def check_model_fields(cfg: Any, others: str) -> None:
    """Shared by model and student configs: one way to name the model, a factory that
    looks like one, weights only with a model to load them into."""
    named = [k for k in (*others.split("|"), "factory") if getattr(cfg, k, None) is not None]
    if len(named) != 1:
        raise ValueError(f"give exactly one of {' or '.join(others.split('|'))} or factory")
    if cfg.factory is not None and ":" not in cfg.factory:
        raise ValueError(f"factory {cfg.factory!r} must be 'package.module:function' or "
                         "'path/to/file.py:function'")
    if cfg.weights is not None and cfg.pretrained:
        raise ValueError("give weights or pretrained: true, not both")


class OptimizerConfig(Strict):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)


class ScheduleConfig(Strict):
    name: Literal["cosine", "step", "onecycle", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    milestones: list[float] = Field([], description="step: epochs where lr *= gamma")
    gamma: float = Field(0.1, gt=0)
    min_lr_ratio: float = Field(0.0, ge=0)
    pct_start: float = Field(0.3, gt=0, lt=1)


class TrainConfig(Strict):
    epochs: int = Field(30, gt=0)
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0)
    device: str = "auto"
    threads: int | None = Field(None, gt=0)
    amp: bool = True
    memory_format: Literal["auto", "channels_last", "contiguous"] = Field(
        "auto", description="layout of 4-D weights; auto = channels_last (faster on CPU and GPU)")
    deterministic: bool = False
    checkpoint_every_steps: int | None = Field(None, gt=0)
    keep_epoch_checkpoints: bool = Field(
        False, description="also keep checkpoints/epochNNN.pt after every epoch (halting "
        "rules can then be replayed on the finished run)")
    progress: bool = True
    sync_bn: bool = Field(
        False, description="data-parallel runs (--nproc, torchrun): BatchNorm statistics over "
        "the global batch (torch's SyncBatchNorm, CUDA only) instead of each rank's slice")


class HaltingRule(Strict):
    """Base of every early-halting rule: ``kind`` names a registered rule
    (``train/halting/``, or a plugin's), whose own settings model (a subclass of this one)
    checks the other keys at load, so a misspelt field is refused with that kind's keys."""

    needs_teacher: ClassVar[bool] = False

    kind: str
    min_epochs: int = Field(1, ge=0, description="never halt before this many epochs")

    def check(self, history: list[dict[str, Any]], read: Any) -> str | None:
        """The reason to halt after the last record of ``history`` (None: go on); ``read``
        says which split to read (``read.acc``: ``val_acc`` or ``test_acc``)."""
        raise NotImplementedError


class LoggerConfig(Strict):
    """Base of every run logger's settings: ``name`` a registered logger
    (``train/loggers/``, or a plugin's); the other keys are its own settings."""

    name: str


def import_plugins(data: Any) -> Any:
    """A raw config's ``plugins`` imported before the rest is validated, so the losses,
    sources, rules and loggers they register validate; file paths are stored absolute,
    so a run's saved config.yaml loads from anywhere. Used as a ``before`` validator."""
    specs = data.get("plugins") if isinstance(data, dict) else None
    if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
        specs = []  # no plugins, or the field's own validation names the problem
    from edgedistill.plugins import load_plugins, resolve

    load_plugins(specs)
    return {**data, "plugins": [resolve(s) for s in specs]} if specs else data


PLUGINS_HELP = ("modules (my_pkg.kd_losses) or .py files (next to this config) to import "
                "first: the losses, sources, halting rules and loggers they register")


class RunBase(Strict):
    plugins: list[str] = Field([], description=PLUGINS_HELP)
    name: str = "run"
    seed: int = 0
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    halting: list[SerializeAsAny[HaltingRule]] = Field(
        [], description="early-halting rules, each {kind: plateau|agreement|teacher_gap|"
        "loss_improvement (or a plugin's), its settings}")
    halting_mode: Literal["any", "all"] = "any"
    halting_anneal_epochs: int = Field(
        0, ge=0, description="on a halt, decay the learning rate to the schedule's floor over "
        "this many more epochs before stopping (0: stop at once)")
    loggers: list[SerializeAsAny[LoggerConfig]] = Field(
        [], description="run loggers besides metrics.jsonl and plots/: tensorboard, mlflow "
        "(optional extras) or a plugin's; a name or {name: ..., its settings}")

    @field_validator("halting", mode="before")
    @classmethod
    def _rules_by_kind(cls, rules: Any) -> Any:
        from edgedistill.train.halting import parse_rules

        return parse_rules(rules)

    @field_validator("loggers", mode="before")
    @classmethod
    def _loggers_by_name(cls, loggers: Any) -> Any:
        from edgedistill.train.loggers import parse_loggers

        return parse_loggers(loggers)

    @model_validator(mode="before")
    @classmethod
    def _plugins_first(cls, data: Any) -> Any:
        return import_plugins(data)


class TrainExperiment(RunBase):
    """``edgedistill train``: one model, one dataset, supervised."""

    model: ModelConfig

    @model_validator(mode="after")
    def _no_teacher_rules(self) -> TrainExperiment:
        needs = sorted(r.kind for r in self.halting if r.needs_teacher)
        if needs:
            raise ValueError(f"halting rules {needs} need a teacher; use them with "
                             "`edgedistill distill`, or use plateau/loss_improvement")
        return self


class CacheConfig(Strict):
    """Settings of the ``cache`` teacher source (``distill/cache.py``)."""

    dir: str | None = Field(None, description="default: <run parent>/.teacher_cache")
    top_k: int | None = Field(None, gt=0)
    num_draws: int = Field(4, gt=0)
    batch_size: int = Field(512, gt=0)
    precision: Literal["fp16", "fp32"] = Field(
        "fp16", description="stored logits and features: fp16 (half the disk) or fp32")


class ReplicaSpec(Strict):
    """One teacher replica of a pool: ``torch`` runs on CPU threads or a GPU; ``onnx`` and
    ``onnx-int8`` run ONNX Runtime on CPU threads (int8: static QDQ, calibrated on training
    images)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    backend: Literal["torch", "onnx", "onnx-int8"] = "torch"
    num_cpus: float = Field(1.0, gt=0, description="Ray CPUs reserved; threads = floor, >= 1")
    num_gpus: float = Field(0.0, ge=0)
    resources: dict[str, float] = Field({}, description="custom Ray resources, e.g. {edge: 1}")
    count: int = Field(1, gt=0, description="how many replicas of this kind")

    @model_validator(mode="after")
    def _onnx_on_cpu(self) -> ReplicaSpec:
        if self.backend != "torch" and self.num_gpus > 0:
            raise ValueError(f"backend {self.backend} runs on CPU only; use backend torch "
                             "for a GPU replica")
        return self

    @property
    def threads(self) -> int:
        return max(1, int(self.num_cpus))

    def demand(self) -> dict[str, float]:
        """The Ray resources one replica of this kind holds while it lives."""
        need = {"CPU": self.num_cpus, **self.resources}
        if self.num_gpus:
            need["GPU"] = self.num_gpus
        return need

    def describe(self) -> str:
        gpu = f", {self.num_gpus:g} GPU" if self.num_gpus else ""
        return f"{self.backend} ({self.num_cpus:g} CPU{gpu})"


class AutoscaleSettings(Strict):
    """Bounds and thresholds of the pool's autoscaling policy (``elastic/scaler.py``)."""

    min_replicas: int = Field(1, gt=0)
    max_replicas: int = Field(8, gt=0)
    grow_wait_fraction: float = Field(0.05, gt=0, lt=1,
                                      description="grow when the student waits longer")
    target_utilization: float = Field(0.75, gt=0, le=1,
                                      description="shrink while the rest stay below this")
    interval_s: float = Field(5.0, gt=0)
    cooldown_s: float = Field(10.0, ge=0)
    replica: ReplicaSpec | None = Field(None, description="kind to add; default replicas[0]")

    @model_validator(mode="after")
    def _bounds(self) -> AutoscaleSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} > max_replicas "
                             f"{self.max_replicas}")
        return self


class PoolConfig(Strict):
    """Settings of the ``pool`` teacher source (``elastic/source.py``)."""

    replicas: list[ReplicaSpec] = Field(
        [ReplicaSpec()], min_length=1,
        description="each: backend torch|onnx|onnx-int8, num_cpus, num_gpus, resources, count")
    address: str | None = Field(None, description="None: embedded Ray; HOST:PORT, auto or ray://")
    service: str | None = Field(
        None, description="attach to the running teacher service of this name (`edgedistill "
        "teachers serve`) instead of starting a pool; address None then means auto")
    max_in_flight: int = Field(4, gt=0, description="requests queued per live replica")
    deadline_s: float = Field(30.0, gt=0,
                              description="a replica silent this long is replaced, its batches "
                                          "re-sent")
    autoscale: AutoscaleSettings | None = Field(
        None, description="min_replicas, max_replicas, grow_wait_fraction, target_utilization, "
                          "interval_s, cooldown_s, replica")
    top_k: int | None = Field(None, gt=0)
    wire_precision: Literal["fp16", "fp32"] = Field(
        "fp16", description="teacher logits and features on the wire: fp16 (half the bytes) "
                            "or fp32 (exactly the online teacher's values)")


class TeacherConfig(Strict):
    source: str | ModelConfig = Field(
        ..., description="zoo:NAME, a run directory, a checkpoint file, or a model "
        "({factory: pkg.mod:fn, kwargs: {}, weights: PATH} or {name: torchvision:NAME, ...})")

    @field_validator("source", mode="before")
    @classmethod
    def _model_source(cls, value: Any) -> Any:
        return model_mapping(value) if isinstance(value, dict) else value

    mode: str = Field("online", description="the teacher source: online, cache, pool or a "
                      "plugin's (distill/sources.py SOURCES)")
    cache: CacheConfig = CacheConfig()
    pool: PoolConfig = PoolConfig()
    allow_unfinished: bool = Field(
        False, description="distil from a teacher whose own run stopped before its schedule "
        "ended (refused by default; reports then say so)")

    # a plugin source's settings go in a section named after it (teacher.my_source: {...})
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    @field_validator("mode")
    @classmethod
    def _registered_source(cls, mode: str) -> str:
        from edgedistill.distill.sources import SOURCES

        if mode not in SOURCES:
            raise ValueError(f"unknown teacher source {mode!r}; choose one of: "
                             f"{', '.join(SOURCES.names())} (or add yours under plugins:)")
        return mode

    @model_validator(mode="after")
    def _plugin_sections(self) -> TeacherConfig:
        from edgedistill.distill.sources import SOURCES

        extra = self.__pydantic_extra__ or {}
        for key, raw in extra.items():
            if key not in SOURCES or key in type(self).model_fields:
                allowed = sorted({*type(self).model_fields, *SOURCES.names()} - {"online"})
                raise ValueError(f"unknown key teacher.{key}; allowed keys here: "
                                 f"{', '.join(allowed)}")
            extra[key] = SOURCES.validate_settings(key, raw or {}, f"teacher.{key}")
        return self

    def settings(self, mode: str | None = None) -> BaseModel:
        """The settings of teacher source ``mode`` (default: this teacher's): its section,
        or its settings model's defaults when the config has none."""
        from edgedistill.distill.sources import SOURCES

        mode = mode or self.mode
        section = getattr(self, mode, None)
        return section if section is not None else \
            SOURCES.validate_settings(mode, {}, f"teacher.{mode}")


class StudentConfig(Strict):
    name: str | None = None
    factory: str | None = Field(None, description="package.module:function or file.py:function")
    kwargs: dict[str, Any] = {}
    weights: str | None = Field(None, description="initial weights (see ModelConfig)")
    pretrained: bool = False
    strict: bool = True
    derive: Literal["shallower", "narrower", "both"] | None = None
    depth: int | None = Field(None, gt=0)
    width: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_way(self) -> StudentConfig:
        try:
            check_model_fields(self, "name|derive")
        except ValueError as err:
            raise ValueError(str(err).replace("give exactly one of name or derive or factory",
                                              "give exactly one of student.name, student.factory "
                                              "or student.derive")) from None
        if self.derive is not None and (self.weights is not None or self.pretrained):
            raise ValueError("a derived student starts from fresh weights; weights and "
                             "pretrained go with student.name or student.factory")
        return self


class LossConfig(Strict):
    """One loss term: a registered loss (``edgedistill losses``) and its settings. The
    name and ``params`` are checked against the loss's own settings model (its
    ``__init__`` signature), so a misspelt parameter is refused at load, keys named."""

    name: str
    weight: float | None = Field(None, description="None: the loss's default_weight (its "
                                 "docstring names the reference it comes from)")
    label: str | None = Field(None, description="name in logs; default: the loss name")
    student_layers: list[str] = []
    teacher_layers: list[str] = []
    params: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        from edgedistill.losses.registry import LOSSES

        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES.names())}"
                             " (or add yours under plugins:)")
        return name

    @field_validator("params")
    @classmethod
    def _typed(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from edgedistill.losses.registry import LOSSES

        if "name" not in info.data:  # the name was refused already
            return params
        checked = LOSSES.validate_settings(info.data["name"], params, "params")
        return checked.model_dump(exclude_unset=True)


class DistillExperiment(RunBase):
    """``edgedistill distill``: a student learns from a frozen teacher."""

    teacher: TeacherConfig
    student: StudentConfig
    losses: list[LossConfig] = [LossConfig(name="ce", weight=1.0), LossConfig(name="kd", weight=1.0)]


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=c`` overrides; values are parsed as YAML (numbers, lists, null)."""
    for item in overrides:
        if "=" not in item:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=5")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UsageError(f"--set {key}: {part!r} is not a section")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise UsageError(f"--set {item!r}: the value is not valid YAML "
                             f"({yaml_problem(err)}); give a YAML value such as 5, [1, 2] or "
                             "'\"text\"'") from None
    return raw


def yaml_problem(err: yaml.YAMLError) -> str:
    """The first line of a YAML parser's complaint and where it is (``line L, column C``)."""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def _allowed_keys(schema: type[BaseModel], loc: tuple) -> list[str]:
    model: Any = schema
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        args = [a for a in getattr(ann, "__args__", ()) if isinstance(a, type)]
        candidates = [ann, *args]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)),
                     None)
        if model is None:
            return []
    return sorted(getattr(model, "model_fields", {}))


def format_validation_error(err: ValidationError, schema: type[BaseModel], source: str) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(schema, loc)
            lines.append(f"unknown key {key!r}; allowed keys here: {', '.join(allowed)}")
        elif e["type"] == "missing":
            lines.append(f"missing key {key!r}")
        else:
            lines.append(f"{key}: {e['msg']} (got {short_repr(e.get('input'))})")
    return f"{source}: " + "; ".join(lines)


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, so one bad value stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def validate(raw: dict, schema: type[BaseModel], source: str = "config") -> Any:
    try:
        return schema.model_validate(raw)
    except ValidationError as err:
        raise UsageError(format_validation_error(err, schema, source)) from None


def read_text_file(path: str | Path, what: str = "file") -> str:
    """The text of a file the user named; missing, unreadable or binary is a ``UsageError``
    naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{what} {str(path)!r} does not exist"
                         + (" (it is a directory)" if path.is_dir() else ""))
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(f"{what} {str(path)!r} is not UTF-8 text (byte {err.start} is "
                         f"{err.object[err.start:err.start + 1]!r}); is it a binary file?"
                         ) from None
    except OSError as err:
        raise UsageError(f"cannot read {what} {str(path)!r}: {err.strerror}") from None


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict:
    """A YAML file's top-level mapping; a missing or binary file, bad YAML or another top
    level is a ``UsageError`` naming the file."""
    path = Path(path)
    text = read_text_file(path, what)
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise UsageError(f"{path}: not valid YAML: {yaml_problem(err)}; fix the file") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: the top level must be a mapping of keys")
    return raw


def load_config(path: str | Path, schema: type[BaseModel], overrides: list[str] = ()) -> Any:
    """Read, override (``--set``) and validate an experiment YAML; its ``plugins`` are
    imported first, ``.py`` files found next to the config file before the working
    directory."""
    raw = plugin_paths(read_yaml_mapping(path), Path(path).parent)
    return validate(apply_overrides(raw, list(overrides)), schema, str(path))


def plugin_paths(raw: dict, base: Path) -> dict:
    """``raw`` with its ``plugins`` files made absolute against ``base`` (the config's folder)."""
    specs = raw.get("plugins")
    if isinstance(specs, list) and all(isinstance(s, str) for s in specs):
        from edgedistill.plugins import resolve

        raw["plugins"] = [resolve(s, base) for s in specs]
    return raw


def dump_config(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)

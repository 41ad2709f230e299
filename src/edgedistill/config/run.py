"""What every training run shares: optimizer, schedule, ``train:``, halting rules and
loggers (dispatched by ``kind`` / ``name`` to their registries), and ``edgedistill train``."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import (
    Field,
    SerializeAsAny,
    field_validator,
    model_validator,
)

from edgedistill.config.base import Strict
from edgedistill.config.data import DataConfig
from edgedistill.config.models import ModelConfig


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

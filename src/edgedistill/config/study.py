"""The schema of a knowledge-transfer study YAML: one teacher, a list of student shapes,
a list of transfer techniques and a list of seeds, trained on one shared data and
training setup so that every difference between cells comes from the technique."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from edgedistill.config import (
    PLUGINS_HELP,
    CacheConfig,
    DataConfig,
    Strict,
    StudentConfig,
    TeacherConfig,
    TrainConfig,
    apply_overrides,
    import_plugins,
    plugin_paths,
    read_yaml_mapping,
    validate,
)
from edgedistill.study.techniques import HintConfig, TechniqueConfig, resolve_techniques

LABEL = re.compile(r"^[A-Za-z0-9_.+-]+$")
DEFAULT_TECHNIQUES = ["none", "kd", "fitnet", "hint+kd"]


def check_label(label: str, what: str) -> str:
    """Labels become folder names and table headers, so they stay filesystem-safe."""
    if not LABEL.match(label):
        raise ValueError(f"{what} label {label!r} may use only letters, digits and _ . + -")
    return label


class StudyTeacherConfig(TeacherConfig):
    """A study defaults to the cached teacher: computed once, shared by every cell."""

    mode: Literal["online", "cache", "pool"] = "cache"
    cache: CacheConfig = CacheConfig()


class StudyStudent(StudentConfig):
    """A student shape: ``derive`` (shallower/narrower/both) from the teacher, or a named model."""

    label: str | None = Field(None, description="default: derive mode + depth/width, or the name")

    def display_label(self) -> str:
        if self.label:
            return self.label
        if self.name:
            return self.name
        parts = [self.derive]
        if self.depth is not None:
            parts.append(f"d{self.depth}")
        if self.width is not None:
            parts.append(f"w{self.width:g}")
        return "-".join(parts)

    def student_config(self) -> StudentConfig:
        return StudentConfig(**self.model_dump(exclude={"label"}))


class TargetConfig(Strict):
    """The accuracy a cell must reach for the convergence-speed figures.

    ``scratch_fraction``: ``fraction`` x the mean final accuracy of the same student
    trained without a teacher (technique ``none``), so each shape is measured against
    what it can learn alone. ``accuracy``: one absolute accuracy for every student.
    """

    kind: Literal["scratch_fraction", "accuracy"] = "scratch_fraction"
    fraction: float = Field(0.99, gt=0)
    accuracy: float | None = Field(None, gt=0, le=1)

    @model_validator(mode="after")
    def _accuracy_given(self) -> TargetConfig:
        if self.kind == "accuracy" and self.accuracy is None:
            raise ValueError("target.kind 'accuracy' needs target.accuracy, e.g. 0.85")
        return self


class StudyConfig(Strict):
    """``edgedistill study``: students x techniques x seeds, all on one teacher."""

    plugins: list[str] = Field([], description=PLUGINS_HELP)
    name: str = "study"
    teacher: StudyTeacherConfig
    students: list[StudyStudent] = Field(..., min_length=1)
    techniques: list[str | TechniqueConfig] = Field(DEFAULT_TECHNIQUES, min_length=1)
    seeds: list[int] = Field([0, 1, 2], min_length=1)
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    target: TargetConfig = TargetConfig()
    hint: HintConfig = HintConfig()
    confidence: float = Field(0.95, gt=0, lt=1, description="level of the intervals on gains")
    workers: int | Literal["auto"] = Field(1, description="cells run at once; auto: cores/threads")

    @model_validator(mode="before")
    @classmethod
    def _plugins_first(cls, data: Any) -> Any:
        return import_plugins(data)

    @model_validator(mode="after")
    def _consistent(self) -> StudyConfig:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        if isinstance(self.workers, int) and self.workers < 1:
            raise ValueError(f"workers must be >= 1 or 'auto', got {self.workers}")
        labels = [check_label(s.display_label(), "student") for s in self.students]
        if len(set(labels)) != len(labels):
            raise ValueError(f"two students share a label in {labels}; give each a `label`")
        names = [check_label(t if isinstance(t, str) else t.label, "technique")
                 for t in self.techniques]
        if len(set(names)) != len(names):
            raise ValueError(f"two techniques share a label in {names}")
        if "none" not in names:
            raise ValueError("techniques must include 'none' (the student trained without a "
                             "teacher): every gain and the default target are measured against it")
        return self

    def student_labels(self) -> list[str]:
        return [s.display_label() for s in self.students]


def load_study(path: str | Path, overrides: list[str] = ()) -> StudyConfig:
    """Read, override (``--set a.b=c``) and validate a study YAML; errors name the key."""
    raw = plugin_paths(read_yaml_mapping(path, "study config"), Path(path).parent)
    cfg = validate(apply_overrides(raw, list(overrides)), StudyConfig, str(path))
    resolve_techniques(cfg)
    return cfg

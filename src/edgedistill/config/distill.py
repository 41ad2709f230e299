"""``edgedistill distill``: losses (each checked against its registered settings) and
the experiment."""

from __future__ import annotations

from typing import Any

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
)

from edgedistill.config.base import Strict
from edgedistill.config.models import StudentConfig
from edgedistill.config.run import RunBase
from edgedistill.config.teacher import TeacherConfig


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

"""What one teacher replica asks for (backend, CPUs, GPUs, custom Ray resources), and
the autoscaling bounds, validated from the ``teacher.pool`` section of a config.

``PoolConfig`` keeps ``replicas`` and ``autoscale`` as plain mappings; these schemas
give them the same one-line errors as the rest of the config (offending key, allowed
values), and ``count`` lets a YAML ask for several alike replicas in one entry.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgedistill.config import validate
from edgedistill.errors import UsageError

BACKENDS = ("torch", "onnx", "onnx-int8")


class ReplicaSpec(BaseModel):
    """One replica: ``torch`` runs on CPU threads or a GPU; ``onnx`` and ``onnx-int8`` run
    ONNX Runtime on CPU threads (int8: static QDQ, calibrated on training images)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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


class AutoscaleSettings(BaseModel):
    """Bounds and thresholds of the autoscaling policy (see ``scaler.py``)."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(1, gt=0)
    max_replicas: int = Field(8, gt=0)
    grow_wait_fraction: float = Field(0.05, gt=0, lt=1,
                                      description="grow when the student waits longer")
    target_utilization: float = Field(0.75, gt=0, le=1,
                                      description="shrink while the rest stay below this")
    interval_s: float = Field(5.0, gt=0)
    cooldown_s: float = Field(10.0, ge=0)
    replica: dict[str, Any] | None = Field(None, description="kind to add; default replicas[0]")

    @model_validator(mode="after")
    def _bounds(self) -> AutoscaleSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} > max_replicas "
                             f"{self.max_replicas}")
        return self


def parse_replicas(items: list[Any]) -> list[ReplicaSpec]:
    """The replica list, one entry per replica (``count`` expanded)."""
    if not items:
        raise UsageError("teacher.pool.replicas: give at least one replica, e.g. "
                         "[{backend: torch, num_cpus: 1}]")
    specs = []
    for i, item in enumerate(items):
        raw = item.model_dump() if isinstance(item, BaseModel) else item
        if not isinstance(raw, dict):
            raise UsageError(f"teacher.pool.replicas[{i}]: expected a mapping like "
                             f"{{backend: torch, num_cpus: 1}}, got {raw!r}")
        spec = validate(raw, ReplicaSpec, f"teacher.pool.replicas[{i}]")
        specs += [spec.model_copy(update={"count": 1})] * spec.count
    return specs


def parse_autoscale(raw: dict[str, Any] | BaseModel | None) -> AutoscaleSettings | None:
    if raw is None:
        return None
    if isinstance(raw, BaseModel):
        raw = raw.model_dump()
    settings = validate(raw, AutoscaleSettings, "teacher.pool.autoscale")
    if settings.replica is not None:
        parse_replicas([settings.replica])
    return settings

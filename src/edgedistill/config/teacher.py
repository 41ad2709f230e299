"""``teacher:``: the source of the teacher and its mode (online, cache, pool or a
plugin's), with each built-in source's settings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from edgedistill.config.base import Strict
from edgedistill.config.models import ModelConfig, model_mapping


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

    @model_validator(mode="before")
    @classmethod
    def _service_shorthand(cls, value: Any) -> Any:
        """``teacher: {mode: pool, service: NAME}`` is ``teacher.pool.service: NAME``; both
        given with different names is refused."""
        if not isinstance(value, dict) or "service" not in value:
            return value
        value = dict(value)
        service = value.pop("service")
        pool = value.get("pool")
        pool = pool.model_dump() if isinstance(pool, BaseModel) else dict(pool or {})
        if pool.get("service") is not None and service is not None \
                and pool["service"] != service:
            raise ValueError(f"teacher.service is {service!r} but teacher.pool.service is "
                             f"{pool['service']!r}; they are the same setting, give one")
        if service is not None:
            pool["service"] = service
        value["pool"] = pool
        return value

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

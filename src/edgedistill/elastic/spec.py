"""What one teacher replica asks for (backend, CPUs, GPUs, custom Ray resources), and
the autoscaling bounds. The schemas (``ReplicaSpec``, ``AutoscaleSettings``) are part of
the ``pool`` source's settings in ``config/teacher.py``, so a wrong pool setting is refused at
config load with the allowed keys; here ``count`` is expanded into one spec per replica,
and mappings from Python callers are checked with the same one-line errors.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from edgedistill.config import AutoscaleSettings, ReplicaSpec, validate
from edgedistill.errors import UsageError

__all__ = ["AutoscaleSettings", "ReplicaSpec", "parse_autoscale", "parse_replicas"]


def parse_replicas(items: list[Any]) -> list[ReplicaSpec]:
    """The replica list, one entry per replica (``count`` expanded)."""
    if not items:
        raise UsageError("teacher.pool.replicas: give at least one replica, e.g. "
                         "[{backend: torch, num_cpus: 1}]")
    specs = []
    for i, item in enumerate(items):
        if isinstance(item, ReplicaSpec):
            spec = item
        elif isinstance(item, dict):
            spec = validate(item, ReplicaSpec, f"teacher.pool.replicas[{i}]")
        else:
            raise UsageError(f"teacher.pool.replicas[{i}]: expected a mapping like "
                             f"{{backend: torch, num_cpus: 1}}, got {item!r}")
        specs += [spec.model_copy(update={"count": 1})] * spec.count
    return specs


def parse_autoscale(raw: dict[str, Any] | BaseModel | None) -> AutoscaleSettings | None:
    if raw is None or isinstance(raw, AutoscaleSettings):
        return raw
    if isinstance(raw, BaseModel):
        raw = raw.model_dump()
    return validate(raw, AutoscaleSettings, "teacher.pool.autoscale")

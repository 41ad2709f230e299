"""Elastic distillation: teacher inference as a pool of Ray replicas, apart from the student.

``PoolSource`` is the teacher source a Distiller uses (``teacher.mode: pool``);
``TeacherPool`` runs heterogeneous, elastic, fault-tolerant replicas; ``Autoscaler``
grows the pool while the student waits and shrinks it while replicas idle. A teacher
service (``service.py``, ``edgedistill teachers serve``) is such a pool as a named,
detached Ray actor that several students attach to (``attach.py``).

The names below load on first use, so mounting the ``teachers`` command does not import
torch and Ray on every ``edgedistill`` call.
"""

from importlib import import_module

_EXPORTS = {
    "BatchPlan": "plan", "Ledger": "plan", "TeacherPool": "pool", "InputSpec": "protocol",
    "Reply": "protocol", "Request": "protocol", "Autoscaler": "scaler", "PoolSource": "source",
    "AutoscaleSettings": "spec", "ReplicaSpec": "spec", "parse_replicas": "spec",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"edgedistill.elastic.{_EXPORTS[name]}"), name)

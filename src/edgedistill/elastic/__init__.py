"""Elastic distillation: teacher inference as a pool of Ray replicas, apart from the student.

``PoolSource`` is the teacher source a Distiller uses (``teacher.mode: pool``);
``TeacherPool`` runs heterogeneous, elastic, fault-tolerant replicas; ``Autoscaler``
grows the pool while the student waits and shrinks it while replicas idle.
"""

from edgedistill.elastic.plan import BatchPlan, Ledger
from edgedistill.elastic.pool import TeacherPool
from edgedistill.elastic.protocol import InputSpec, Reply, Request
from edgedistill.elastic.scaler import Autoscaler
from edgedistill.elastic.source import PoolSource
from edgedistill.elastic.spec import AutoscaleSettings, ReplicaSpec, parse_replicas

__all__ = [
    "AutoscaleSettings",
    "Autoscaler",
    "BatchPlan",
    "InputSpec",
    "Ledger",
    "PoolSource",
    "Reply",
    "ReplicaSpec",
    "Request",
    "TeacherPool",
    "parse_replicas",
]

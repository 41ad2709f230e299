"""Distillation: the Distiller and the teacher sources it reaches its teacher through."""

from edgedistill.distill.cache import CacheSource
from edgedistill.distill.distiller import Distiller
from edgedistill.distill.sources import (
                                         SOURCES,
                                         OnlineSource,
                                         TeacherOutputs,
                                         TeacherRunner,
                                         TeacherSource,
)

__all__ = ["SOURCES", "CacheSource", "Distiller", "OnlineSource", "TeacherOutputs",
           "TeacherRunner", "TeacherSource"]

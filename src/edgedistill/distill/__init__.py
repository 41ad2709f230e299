"""Distillation: the Distiller and the teacher sources it reaches its teacher through.

The names below load on first use, so validating a config (which checks ``teacher.mode``
against ``SOURCES``) does not import torch.
"""

from importlib import import_module

from edgedistill.callable_package import make_callable

_EXPORTS = {"SOURCES": "sources", "TeacherOutputs": "sources", "TeacherSource": "sources",
            "OnlineSource": "online", "TeacherRunner": "online", "CacheSource": "cache",
            "Distiller": "distiller"}
__all__ = sorted(_EXPORTS)

make_callable(__name__, "distill")  # edgedistill.distill(...) is the Python API's distill


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"edgedistill.distill.{_EXPORTS[name]}"), name)

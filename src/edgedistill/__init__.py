"""edgedistill: knowledge distillation that turns large networks into edge models.

The Python API (``edgedistill.distill``, ``train``, ``evaluate``, ``export``,
``Distiller``, ``load_model``) lives in ``library.py`` and is loaded on first use, so
``import edgedistill`` stays cheap (no torch until a function is called). ``distill``,
``train`` and ``export`` are also sub-packages, made callable (``callable_package.py``).
"""

__version__ = "0.1.0"

_API = {"evaluate": "library", "Distiller": "library", "load_model": "api"}
# sub-packages whose module objects are callable (callable_package.py)
_CALLABLE = ("distill", "train", "export")
__all__ = [*_API, *_CALLABLE, "__version__"]


def __getattr__(name: str):
    import importlib

    if name in _CALLABLE:
        return importlib.import_module(f"edgedistill.{name}")
    if name not in _API:
        raise AttributeError(f"module 'edgedistill' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"edgedistill.{_API[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

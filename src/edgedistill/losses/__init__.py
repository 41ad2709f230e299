"""Distillation loss terms, one file per method, each registered in ``LOSSES`` by name.

``build_loss("kd", temperature=4)`` makes a term; ``LOSSES.names()`` and
``LOSSES.describe(name)`` list them (``edgedistill losses``). See ``base.py`` for the
contract between terms and the Distiller. Adding a method is adding a file here: the
registry finds it (``catalog.py``) and imports it when it is first used, so checking a
config does not import torch. ``LossTerm`` and ``LossInputs`` load on first use too.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from edgedistill.losses.registry import LOSSES

if TYPE_CHECKING:
    from edgedistill.losses.base import LossTerm


def build_loss(name: str, **kwargs: Any) -> LossTerm:
    """Instantiate the term registered as ``name``; unknown names raise ``UsageError``."""
    return LOSSES.get(name)(**kwargs)


def __getattr__(name: str) -> Any:
    if name in ("LossInputs", "LossTerm"):
        return getattr(import_module("edgedistill.losses.base"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LOSSES", "LossInputs", "LossTerm", "build_loss"]

"""Distillation loss terms, one file per method, each registered in ``LOSSES`` by name.

``build_loss("kd", temperature=4)`` makes a term; ``LOSSES.names()`` and
``LOSSES.describe(name)`` list them (``edgedistill losses``). See ``base.py`` for the
contract between terms and the Distiller.
"""

from __future__ import annotations

from typing import Any

from edgedistill.losses import (  # noqa: F401  (each import registers its terms)
    ab,
    at,
    cc,
    ce,
    crd,
    dist,
    dkd,
    fitnet,
    fsp,
    ft,
    hint_kd,
    kd,
    logit_std_kd,
    nst,
    pkt,
    reviewkd,
    rkd,
    sp,
    vid,
)
from edgedistill.losses.base import LossInputs, LossTerm
from edgedistill.losses.registry import LOSSES


def build_loss(name: str, **kwargs: Any) -> LossTerm:
    """Instantiate the term registered as ``name``; unknown names raise ``UsageError``."""
    return LOSSES.get(name)(**kwargs)


__all__ = ["LOSSES", "LossInputs", "LossTerm", "build_loss"]

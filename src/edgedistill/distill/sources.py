"""Teacher sources: the only way a Distiller reaches its teacher.

The same Distiller trains against a teacher in this process (``online``), a cache
of teacher outputs on disk (``cache``) or a remote pool of replicas (``pool``, in
``edgedistill.elastic``). A source is told once which teacher layers the loss
terms need (``attach``) and then answers ``outputs(batch)`` for every step.

Each source is an entry of ``SOURCES`` that owns its settings model (the config
section ``teacher.<mode>``) and builds itself from an experiment (``from_config``);
``teacher.mode`` is checked against the registry at config load. The built-in entries
live in their own modules, imported the first time one is looked up, so checking a
config imports neither torch nor Ray, and this package imports nothing from
``elastic``. A plugin registers its own source with ``@SOURCES.register(name,
settings=Model)`` on a :class:`TeacherSource` subclass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edgedistill.registry import Registry

if TYPE_CHECKING:
    import torch

    from edgedistill.config import DistillExperiment

BUILTIN = {"online": "edgedistill.distill.online", "cache": "edgedistill.distill.cache",
           "pool": "edgedistill.elastic.source"}


class SourceRegistry(Registry):
    """A Registry that knows the built-in sources by name and imports the module of one
    the first time it is looked up."""

    def __init__(self, kind: str, builtin: dict[str, str]):
        super().__init__(kind)
        self.builtin = builtin

    def get(self, name: str) -> Any:
        if name in self.builtin and name not in self._items:
            import_module(self.builtin[name])
        return super().get(name)

    def names(self) -> list[str]:
        return sorted({*self._items, *self.builtin})

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self.builtin


SOURCES = SourceRegistry("teacher source", BUILTIN)


@dataclass
class TeacherOutputs:
    logits: torch.Tensor
    features: dict[str, torch.Tensor]


class TeacherSource:
    """Base class. Subclasses build themselves in ``from_config``, set ``layers`` in
    ``attach`` and answer ``outputs``."""

    # True for a source that builds the teacher again elsewhere from ``teacher.source``
    # (pool replicas): it cannot take a teacher given as a Python module
    rebuilds_teacher: ClassVar[bool] = False

    def __init__(self):
        self.layers: list[str] = []
        self.wait_seconds = 0.0

    @classmethod
    def from_config(cls, cfg: DistillExperiment, teacher, device: torch.device,
                    run_dir: Path) -> TeacherSource:
        """The source of ``cfg`` (its settings: ``cfg.teacher.settings()``) for a run in
        ``run_dir``."""
        raise NotImplementedError(f"{cls.__name__} does not implement from_config")

    @classmethod
    def pipeline_draws(cls, cfg: DistillExperiment) -> int | None:
        """How many augmentation draws the training pipeline must cycle through (None: a
        fresh draw every epoch). A source that precomputes teacher outputs per (sample,
        draw) says how many; reports then count one teacher pass per sample and draw
        instead of one per image seen."""
        return None

    def attach(self, layers: list[str], train_pipe) -> None:
        self.layers = list(layers)

    def outputs(self, batch) -> TeacherOutputs:  # pragma: no cover - abstract
        raise NotImplementedError

    def timed_outputs(self, batch) -> TeacherOutputs:
        tic = time.perf_counter()
        out = self.outputs(batch)
        self.wait_seconds += time.perf_counter() - tic
        return out

    def stats(self) -> dict[str, float]:
        """Per-epoch figures for metrics.jsonl; resets the counters."""
        wait, self.wait_seconds = self.wait_seconds, 0.0
        return {"teacher_wait_s": wait}

    def close(self) -> None:
        """Release resources (processes, files)."""


_ONLINE = ("OnlineSource", "TeacherRunner", "freeze")  # torch-side names, loaded on use


def __getattr__(name: str):
    if name not in _ONLINE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module("edgedistill.distill.online"), name)

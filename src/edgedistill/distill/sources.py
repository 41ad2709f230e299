"""Teacher sources: the only way a Distiller reaches its teacher.

The same Distiller trains against a teacher in this process (``online``), a cache
of teacher outputs on disk (``cache``) or a remote pool of replicas (``pool``, in
``edgedistill.elastic``). A source is told once which teacher layers the loss
terms need (``attach``) and then answers ``outputs(batch)`` for every step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from edgedistill.registry import Registry
from edgedistill.train.device import autocast, to_layout

SOURCES = Registry("teacher source")


@dataclass
class TeacherOutputs:
    logits: torch.Tensor
    features: dict[str, torch.Tensor]


class TeacherSource:
    """Base class. Subclasses set ``layers`` in ``attach`` and answer ``outputs``."""

    def __init__(self):
        self.layers: list[str] = []
        self.wait_seconds = 0.0

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


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class TeacherRunner:
    """A frozen teacher with forward hooks on the requested layers."""

    def __init__(self, teacher: nn.Module, layers: list[str], device: torch.device,
                 amp: bool = True, layout: str = "auto"):
        from edgedistill.models import FeatureExtractor

        self.model = to_layout(freeze(teacher), device, layout)
        self.device = device
        self.amp = amp
        self.extractor = FeatureExtractor(self.model, layers) if layers else None
        self.layers = list(layers)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> TeacherOutputs:
        with autocast(self.device, self.amp):
            logits = self.model(images.to(self.device, non_blocking=True))
        feats = {p: self.extractor.features[p].float() for p in self.layers} \
            if self.extractor else {}
        return TeacherOutputs(logits.float(), feats)


@SOURCES.register("online")
class OnlineSource(TeacherSource):
    """Teacher forward pass in this process, no_grad, eval mode, bf16 on CUDA."""

    def __init__(self, teacher: nn.Module, device: torch.device, amp: bool = True):
        super().__init__()
        self.teacher = teacher
        self.device = device
        self.amp = amp
        self.runner: TeacherRunner | None = None

    def attach(self, layers: list[str], train_pipe) -> None:
        super().attach(layers, train_pipe)
        self.runner = TeacherRunner(self.teacher, self.layers, self.device, self.amp)

    def outputs(self, batch) -> TeacherOutputs:
        return self.runner(batch.images)

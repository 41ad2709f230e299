"""The ``online`` teacher source: the teacher's forward pass in this process, and the
``TeacherRunner`` every other source computes teacher outputs with."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from edgedistill.config import Strict
from edgedistill.distill.sources import SOURCES, TeacherOutputs, TeacherSource
from edgedistill.train.device import autocast, to_layout


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


class OnlineSettings(Strict):
    """The online source has no settings of its own (mixed precision is ``train.amp``)."""


@SOURCES.register("online", settings=OnlineSettings)
class OnlineSource(TeacherSource):
    """Teacher forward pass in this process, no_grad, eval mode, bf16 on CUDA."""

    def __init__(self, teacher: nn.Module, device: torch.device, amp: bool = True):
        super().__init__()
        self.teacher = teacher
        self.device = device
        self.amp = amp
        self.runner: TeacherRunner | None = None

    @classmethod
    def from_config(cls, cfg, teacher: nn.Module, device: torch.device,
                    run_dir: Path) -> OnlineSource:
        return cls(teacher, device, cfg.train.amp)

    def attach(self, layers: list[str], train_pipe) -> None:
        super().attach(layers, train_pipe)
        self.runner = TeacherRunner(self.teacher, self.layers, self.device, self.amp)

    def outputs(self, batch) -> TeacherOutputs:
        return self.runner(batch.images)

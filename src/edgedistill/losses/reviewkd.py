"""ReviewKD: deeper student stages "review" shallower ones before matching the teacher."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from edgedistill.losses.base import LossInputs
from edgedistill.losses.common import FeatureTerm, as_map
from edgedistill.losses.registry import register


class AttentionFusion(nn.Module):
    """ABF: reduce a student stage to ``mid`` channels, fuse it with the deeper stage's
    fused map through two learned spatial attention maps, and project to teacher channels."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, mid_channels, 1, bias=False),
                                    nn.BatchNorm2d(mid_channels))
        self.project = nn.Sequential(
            nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.attention = (nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid())
                          if fuse else None)

    def forward(self, x: torch.Tensor, deeper: torch.Tensor | None,
                out_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (output at the teacher's size, fused map handed to the next shallower stage)."""
        x = self.reduce(x)
        if self.attention is not None and deeper is not None:
            deeper = F.interpolate(deeper, size=x.shape[-2:], mode="nearest")
            z = self.attention(torch.cat([x, deeper], dim=1))
            x = x * z[:, :1] + deeper * z[:, 1:]
        out = self.project(x)
        if tuple(out.shape[-2:]) != tuple(out_size):
            out = F.interpolate(out, size=tuple(out_size), mode="nearest")
        return out, x


def hierarchical_context_loss(s: torch.Tensor, t: torch.Tensor,
                              levels: tuple[int, ...] = (4, 2, 1)) -> torch.Tensor:
    """HCL: MSE at full size plus MSE after pooling to each level smaller than the map,
    with weights halving per level, normalised by the weights' sum."""
    loss = F.mse_loss(s, t)
    weight, total = 1.0, 1.0
    for level in levels:
        if level >= s.shape[2]:
            continue
        weight /= 2
        loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(s, level),
                                          F.adaptive_avg_pool2d(t, level))
        total += weight
    return loss / total


@register("reviewkd")
class ReviewKD(FeatureTerm):
    """ReviewKD: fuse student stages deep to shallow by attention, match with a context pyramid.

    Chen, Liu, Zhao and Jia, "Distilling Knowledge via Knowledge Review", CVPR 2021. Each
    teacher stage is matched not by the same student stage alone but by a fusion (ABF)
    of that stage with all deeper student stages, so shallow teacher knowledge guides
    the deeper student layers too; the comparison (HCL) uses a spatial pyramid of
    pooled maps. Give the layers shallow to deep, on both sides, one per stage (the
    pooled embedding may be the last, as the authors do). Loss: sum over stages of HCL.

    Params: ``mid_channels`` (64: the authors' CIFAR setting; 256 on ImageNet),
    ``warmup_epochs`` (20): the term is scaled by min((epoch + 1) / warmup_epochs, 1),
    epochs counted from 0 (mdistiller's ``min(epoch / WARMUP_EPOCHS, 1)`` with its
    epochs counted from 1; 0 turns the warm-up off). Usual layers: the output of every
    residual group.

    ``default_weight`` 5.0 and the 20-epoch warm-up are the CIFAR-100 reference
    configuration: mdistiller's ``configs/cifar100/reviewkd.yaml`` sets
    ``REVIEWKD_WEIGHT: 5.0`` over ``mdistiller/engine/cfg.py``'s ``WARMUP_EPOCHS = 20``
    (megvii-research/mdistiller at a08d46f), as the authors' ``CIFAR-100/script/reviewKD.sh``
    uses ``--kd-loss-weight 5.0`` for most pairs (8.0, 0.6 and 1.0 for three others) with
    ``train.py``'s ``--kd-warm-up 20`` (dvlab-research/ReviewKD at cede6ea).
    """

    default_weight = 5.0

    def __init__(self, student_layers: list[str] | None = None,
                 teacher_layers: list[str] | None = None, mid_channels: int = 64,
                 warmup_epochs: Annotated[int, Field(ge=0)] = 20):
        super().__init__(student_layers, teacher_layers)
        self.mid_channels = mid_channels
        self.warmup_epochs = warmup_epochs
        self.fusions = nn.ModuleList()

    def build(self, student_shapes: list[torch.Size], teacher_shapes: list[torch.Size]) -> None:
        super().build(student_shapes, teacher_shapes)
        deepest = len(student_shapes) - 1
        self.fusions = nn.ModuleList(
            AttentionFusion(s[1], self.mid_channels, t[1], fuse=i != deepest)
            for i, (s, t) in enumerate(zip(student_shapes, teacher_shapes, strict=True))
        )

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        self.require_built(self.fusions)
        loss = inputs.student_logits.new_zeros(())
        deeper = None
        for fusion, (s, t) in reversed(list(zip(self.fusions, self.pairs(inputs), strict=True))):
            t = as_map(t)
            out, deeper = fusion(as_map(s), deeper, t.shape[-2:])
            loss = loss + hierarchical_context_loss(out, t)
        ramp = min((inputs.epoch + 1) / self.warmup_epochs, 1.0) if self.warmup_epochs else 1.0
        return ramp * loss

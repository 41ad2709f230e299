"""Flow of solution procedure: match Gram matrices between two layers of each network."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.errors import UsageError
from edgedistill.losses.base import LossInputs
from edgedistill.losses.common import FeatureTerm, as_map, match_spatial
from edgedistill.losses.registry import register


def fsp_matrix(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """[B, C1, C2] inner products of channel maps over space, divided by H*W."""
    first, second = match_spatial(first, second)
    h, w = first.shape[-2:]
    return first.flatten(2) @ second.flatten(2).transpose(1, 2) / (h * w)


@register("fsp")
class FlowOfSolution(FeatureTerm):
    """FSP: squared distance of Gram ("flow") matrices between pairs of layers.

    Yim, Joo, Bae and Kim, "A Gift from Knowledge Distillation: Fast Optimization,
    Network Minimization and Transfer Learning", CVPR 2017. The FSP matrix of layers
    (a, b) is G = F_a^T F_b / (H W): how features flow from a to b. ``student_layers``
    and ``teacher_layers`` are flat lists of even length read as (in, out) pairs:
    [a1, b1, a2, b2, ...]. Within a network, the larger of a and b is average-pooled to
    the smaller. The paper picks layers with equal channels in both networks; where the
    student's channel count differs, a learned 1x1 conv maps it to the teacher's (an
    extension). Loss: mean of (G_s - G_t)^2 per pair, summed over pairs.

    No params. ``default_weight`` 50 is Tian et al.'s CRD benchmark weight. Usual
    layers: input and output of each residual group. The paper uses FSP as a first
    stage before training on the task.
    """

    default_weight = 50.0

    def __init__(self, student_layers: list[str] | None = None,
                 teacher_layers: list[str] | None = None):
        super().__init__(student_layers, teacher_layers)
        if len(self.student_layers) % 2:
            raise UsageError(
                f"loss {self.name!r} reads its layers as (in, out) pairs and needs an even number; "
                f"got {len(self.student_layers)}: {self.student_layers}"
            )
        self.adaptors = nn.ModuleList()

    def build(self, student_shapes: list[torch.Size], teacher_shapes: list[torch.Size]) -> None:
        super().build(student_shapes, teacher_shapes)
        self.adaptors = nn.ModuleList(
            nn.Identity() if s[1] == t[1] else nn.Conv2d(s[1], t[1], 1, bias=False)
            for s, t in zip(student_shapes, teacher_shapes, strict=True)
        )

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        self.require_built(self.adaptors)
        maps = [(adaptor(as_map(s)), as_map(t))
                for adaptor, (s, t) in zip(self.adaptors, self.pairs(inputs), strict=True)]
        loss = inputs.student_logits.new_zeros(())
        for (s_in, t_in), (s_out, t_out) in zip(maps[::2], maps[1::2], strict=True):
            loss = loss + F.mse_loss(fsp_matrix(s_in, s_out), fsp_matrix(t_in, t_out))
        return loss

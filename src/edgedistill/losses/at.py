"""Attention transfer: match where in the image each network puts its activation energy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgedistill.losses.base import LossInputs
from edgedistill.losses.common import FeatureTerm, match_spatial
from edgedistill.losses.registry import register


def attention_map(x: torch.Tensor, p: float) -> torch.Tensor:
    """Channel-mean of |x|^p, [B, 1, H, W]: channel counts drop out, so any widths compare."""
    return x.abs().pow(p).mean(dim=1, keepdim=True)


@register("at")
class AttentionTransfer(FeatureTerm):
    """Attention transfer: squared distance between L2-normalised spatial attention maps.

    Zagoruyko and Komodakis, "Paying More Attention to Attention: Improving the
    Performance of Convolutional Neural Networks via Attention Transfer", ICLR 2017.
    Needs feature maps [B, C, H, W]; student and teacher channel counts may differ.
    Attention maps of different spatial size are average-pooled to the smaller size.
    The per-pair loss is the mean of (Q_s/|Q_s| - Q_t/|Q_t|)^2, summed over pairs, as
    in the authors' code.

    Params: ``p`` (2, the paper's choice). The paper's beta = 1000 is ``default_weight``.
    Usual layers: the outputs of each residual group.
    """

    ranks = (4,)
    default_weight = 1000.0

    def __init__(self, student_layers: list[str] | None = None,
                 teacher_layers: list[str] | None = None, p: float = 2.0):
        super().__init__(student_layers, teacher_layers)
        self.p = p

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        loss = inputs.student_logits.new_zeros(())
        for s, t in self.pairs(inputs):
            a_s, a_t = match_spatial(attention_map(s, self.p), attention_map(t, self.p))
            diff = F.normalize(a_s.flatten(1), dim=1) - F.normalize(a_t.flatten(1), dim=1)
            loss = loss + diff.pow(2).mean()
        return loss

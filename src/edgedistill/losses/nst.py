"""Neuron selectivity transfer: match the distributions of per-channel activation patterns."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgedistill.losses.base import LossInputs
from edgedistill.losses.common import FeatureTerm, match_spatial
from edgedistill.losses.registry import register


@register("nst")
class NeuronSelectivityTransfer(FeatureTerm):
    """Neuron selectivity transfer: squared MMD with a polynomial kernel over channel maps.

    Huang and Wang, "Like What You Like: Knowledge Distill via Neuron Selectivity
    Transfer", arXiv:1707.01219, 2017. Each channel's L2-normalised spatial map is one
    sample of the layer's selectivity distribution; MMD compares the student's and the
    teacher's distributions, so channel counts may differ. Needs feature maps; spatial
    sizes are average-pooled to the smaller one; batch sizes must match.
    Loss per pair: mean k(t, t') + mean k(s, s') - 2 mean k(s, t), averaged over the batch,
    with k(x, y) = (x.y + c)^d.

    Params: ``degree`` (2) and ``constant`` (0.0): the paper's polynomial kernel.
    ``default_weight`` 50 is Tian et al.'s CRD benchmark weight.
    """

    ranks = (4,)
    default_weight = 50.0

    def __init__(self, student_layers: list[str] | None = None,
                 teacher_layers: list[str] | None = None, degree: int = 2,
                 constant: float = 0.0):
        super().__init__(student_layers, teacher_layers)
        self.degree = degree
        self.constant = constant

    def kernel_mean(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a @ b.transpose(1, 2) + self.constant).pow(self.degree).mean()

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        loss = inputs.student_logits.new_zeros(())
        for s, t in self.pairs(inputs):
            s, t = match_spatial(s, t)
            s = F.normalize(s.flatten(2), dim=2)
            t = F.normalize(t.flatten(2), dim=2)
            loss = loss + (self.kernel_mean(t, t) + self.kernel_mean(s, s)
                           - 2 * self.kernel_mean(s, t))
        return loss

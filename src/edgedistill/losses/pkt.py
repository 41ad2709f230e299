"""Probabilistic knowledge transfer: match the conditional distributions of neighbours."""

from __future__ import annotations

import torch

from edgedistill.losses.base import LossInputs
from edgedistill.losses.common import FeatureTerm
from edgedistill.losses.registry import register


def neighbour_distribution(x: torch.Tensor, eps: float) -> torch.Tensor:
    """P(j | i) from a cosine-similarity kernel mapped to [0, 1], each row summing to 1."""
    flat = x.flatten(1)
    flat = flat / (flat.norm(dim=1, keepdim=True) + eps)
    kernel = (flat @ flat.t() + 1) / 2
    return kernel / kernel.sum(dim=1, keepdim=True)


@register("pkt")
class ProbabilisticKT(FeatureTerm):
    """Probabilistic knowledge transfer: KL between cosine-kernel neighbour distributions.

    Passalis and Tefas, "Learning Deep Representations with Probabilistic Knowledge
    Transfer", ECCV 2018. Only the geometry of the batch is transferred, so embeddings
    of any dimension compare; batch sizes must match. Loss per pair: mean over i, j of
    P_t(j|i) log(P_t(j|i) / P_s(j|i)) (the authors' averaging), summed over pairs.

    Params: ``eps`` (1e-7). ``default_weight`` 30000 is Tian et al.'s CRD benchmark
    weight. Usual layer: the penultimate (pooled) embedding.
    """

    ranks = None
    default_weight = 30000.0

    def __init__(self, student_layers: list[str] | None = None,
                 teacher_layers: list[str] | None = None, eps: float = 1e-7):
        super().__init__(student_layers, teacher_layers)
        self.eps = eps

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        loss = inputs.student_logits.new_zeros(())
        for s, t in self.pairs(inputs):
            p_s = neighbour_distribution(s, self.eps)
            p_t = neighbour_distribution(t, self.eps)
            loss = loss + (p_t * torch.log((p_t + self.eps) / (p_s + self.eps))).mean()
        return loss

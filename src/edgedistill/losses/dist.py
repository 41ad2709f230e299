"""DIST: match the teacher's prediction relations by Pearson correlation, not exact values."""

from __future__ import annotations

import torch

from edgedistill.losses.base import LossInputs, LossTerm
from edgedistill.losses.registry import register


def pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


@register("dist")
class DIST(LossTerm):
    """DIST: inter-class and intra-class Pearson correlation between softened predictions.

    Huang, You, Wang, Qian and Xu, "Knowledge Distillation from A Stronger Teacher",
    NeurIPS 2022. Correlation is invariant to shift and scale of the predictions, so a
    weak student is asked to rank classes (per sample: inter-class) and samples (per
    class: intra-class) like the teacher, not to reproduce a much stronger teacher's
    exact probabilities.

    Params: ``beta`` (1.0, inter-class), ``gamma`` (1.0, intra-class), ``tau`` (1.0):
    the paper's ImageNet setting; CIFAR-100 uses beta = gamma = 2, tau = 4. Uses logits.
    ``default_weight`` 1: beta and gamma carry the weighting (the paper's loss is
    CE + beta inter + gamma intra).
    """

    default_weight = 1.0

    def __init__(self, student_layers: list[str] | None = None,
                 teacher_layers: list[str] | None = None, beta: float = 1.0,
                 gamma: float = 1.0, tau: float = 1.0):
        super().__init__(student_layers, teacher_layers)
        self.beta = beta
        self.gamma = gamma
        self.tau = tau

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        p_s = (inputs.student_logits / self.tau).softmax(dim=1)
        p_t = (inputs.teacher_logits.detach() / self.tau).softmax(dim=1)
        inter = 1 - pearson_rows(p_s, p_t).mean()
        intra = 1 - pearson_rows(p_s.t(), p_t.t()).mean()
        return self.tau**2 * (self.beta * inter + self.gamma * intra)

"""KD on z-score standardised logits."""

from __future__ import annotations

import torch

from edgedistill.losses.base import LossInputs, LossTerm
from edgedistill.losses.kd import kd_divergence
from edgedistill.losses.registry import register


def standardize(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Per-sample z-score (unbiased std, as in the authors' code)."""
    mean = logits.mean(dim=1, keepdim=True)
    return (logits - mean) / (logits.std(dim=1, keepdim=True) + eps)


@register("logit_std_kd")
class LogitStandardKD(LossTerm):
    """KD after z-scoring each sample's logits, so the student need not match their scale.

    Sun, Ren, Li, Wang and Cao, "Logit Standardization in Knowledge Distillation",
    CVPR 2024. Standardising removes the implicit demand of plain KD that student and
    teacher logits share range and mean, letting a small student match the teacher's
    logit *relations* only.

    Params: ``temperature`` (2.0, the authors' base temperature for CIFAR-100 KD). They
    weight this term 9 on CIFAR-100 (``default_weight``): sunshangquan/
    logit-standardization-KD's ``configs/cifar100/kd/*.yaml`` are tagged
    ``kd,<teacher>,<student>,2,9`` (base temperature 2, KD weight 9). Uses logits only.
    """

    default_weight = 9.0

    def __init__(self, student_layers: list[str] | None = None,
                 teacher_layers: list[str] | None = None, temperature: float = 2.0):
        super().__init__(student_layers, teacher_layers)
        self.temperature = temperature

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        return kd_divergence(standardize(inputs.student_logits),
                             standardize(inputs.teacher_logits), self.temperature)

"""Decoupled knowledge distillation: target-class and non-target-class KD weighted apart."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from edgedistill.losses.base import LossInputs, LossTerm
from edgedistill.losses.registry import register


def _kl(p_t: torch.Tensor, log_p_t: torch.Tensor, log_p_s: torch.Tensor) -> torch.Tensor:
    return (p_t * (log_p_t - log_p_s)).sum(dim=1).mean()


def dkd_parts(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
              targets: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD), each already multiplied by T^2.

    TCKD compares the binary (target, everything else) distributions; NCKD compares the
    distributions over the non-target classes alone, renormalised. The target column is
    dropped rather than masked with a large negative number, so NCKD is exact.
    """
    s = student_logits / temperature
    t = teacher_logits.detach() / temperature
    gt = F.one_hot(targets, s.shape[1]).bool()

    def binary(logits: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=1)
        log_target = log_p[gt].unsqueeze(1)
        log_rest = torch.logsumexp(log_p.masked_fill(gt, float("-inf")), dim=1, keepdim=True)
        return torch.cat([log_target, log_rest], dim=1)

    def non_target(logits: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(logits[~gt].view(len(logits), -1), dim=1)

    log_b_t = binary(t)
    tckd = _kl(log_b_t.exp(), log_b_t, binary(s))
    log_n_t = non_target(t)
    nckd = _kl(log_n_t.exp(), log_n_t, non_target(s))
    return tckd * temperature**2, nckd * temperature**2


@register("dkd")
class DecoupledKD(LossTerm):
    """Decoupled KD: alpha * target-class KD + beta * non-target-class KD, warmed up.

    Zhao, Cui, Song, Qiu and Liang, "Decoupled Knowledge Distillation", CVPR 2022. Plain
    KD couples NCKD to the teacher's confidence on the target class, which suppresses it
    exactly where the teacher is good; weighting the two parts separately restores it.

    Params (CIFAR-100 defaults of the paper): ``alpha`` (1.0), ``beta`` (8.0; 0.5 on
    ImageNet), ``temperature`` (4.0; 1 on ImageNet), ``warmup_epochs`` (20): the term is
    scaled by min((epoch + 1) / warmup_epochs, 1), epochs counted from 0. Uses logits
    and targets. ``default_weight`` 1: alpha and beta carry the weighting, as in
    mdistiller's ``CFG.DKD`` (CE_WEIGHT 1.0 beside ALPHA 1.0, BETA 8.0, WARMUP 20).
    """

    default_weight = 1.0

    def __init__(self, student_layers: list[str] | None = None,
                 teacher_layers: list[str] | None = None, alpha: float = 1.0,
                 beta: float = 8.0, temperature: float = 4.0, warmup_epochs: Annotated[int, Field(ge=0)] = 20):
        super().__init__(student_layers, teacher_layers)
        self.alpha = alpha
        self.beta = beta
        self.temperature = temperature
        self.warmup_epochs = warmup_epochs

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        tckd, nckd = dkd_parts(inputs.student_logits, inputs.teacher_logits, inputs.targets,
                               self.temperature)
        ramp = min((inputs.epoch + 1) / self.warmup_epochs, 1.0) if self.warmup_epochs else 1.0
        return ramp * (self.alpha * tckd + self.beta * nckd)

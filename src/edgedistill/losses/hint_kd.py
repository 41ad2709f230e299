"""Intermediate-layer hints and last-layer KD in one term."""

from __future__ import annotations

import torch

from edgedistill.losses.base import LossInputs
from edgedistill.losses.fitnet import FitNet
from edgedistill.losses.kd import kd_divergence
from edgedistill.losses.registry import register


@register("hint+kd")
class HintKD(FitNet):
    """FitNets hints on the given layers plus Hinton KD on the logits, trained together.

    Combines Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015 (hint, with
    the learned regressor of ``fitnet``) and Hinton, Vinyals and Dean, "Distilling the
    Knowledge in a Neural Network", NIPS Deep Learning Workshop 2014 (KD). One term, so a
    study can compare "intermediate + last layer" transfer against either alone with a
    single name. Unlike the paper's two stages both parts are active from the start.

    Params: ``hint_weight`` (100.0, the FitNet weight of Tian et al.'s CRD benchmark),
    ``kd_weight`` (1.0), ``temperature`` (4.0), ``batch_norm`` (True, regressor BN).
    ``default_weight`` 1: the two inner weights carry the scale (no reference weights the
    combined term itself).
    """

    default_weight = 1.0

    def __init__(self, student_layers: list[str] | None = None,
                 teacher_layers: list[str] | None = None, hint_weight: float = 100.0,
                 kd_weight: float = 1.0, temperature: float = 4.0, batch_norm: bool = True):
        super().__init__(student_layers, teacher_layers, batch_norm=batch_norm)
        self.hint_weight = hint_weight
        self.kd_weight = kd_weight
        self.temperature = temperature

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        kd = kd_divergence(inputs.student_logits, inputs.teacher_logits, self.temperature)
        return self.hint_weight * self.hint_loss(inputs) + self.kd_weight * kd

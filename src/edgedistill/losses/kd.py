"""Hinton's knowledge distillation on softened logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgedistill.losses.base import LossInputs, LossTerm
from edgedistill.losses.registry import register


def kd_divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                  temperature: float) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)) averaged over the batch, times T^2.

    The T^2 factor keeps gradient magnitudes comparable across temperatures (Hinton et al.).
    """
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
    return kl * temperature**2


@register("kd")
class KnowledgeDistillation(LossTerm):
    """Hinton KD: KL divergence between temperature-softened teacher and student outputs.

    Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", NIPS Deep
    Learning Workshop, 2014 (arXiv:1503.02531, 2015).

    Params: ``temperature`` (4.0, the common CIFAR/ImageNet benchmark value; the paper
    tries 1-20), ``start_epoch`` (0): zero before this epoch (second FitNets stage).
    Uses logits only. Usual weight 0.9 with ``ce`` at 0.1 (mdistiller's ``CFG.KD.LOSS``:
    CE_WEIGHT 0.1, KD_WEIGHT 0.9; Tian et al.'s ``-r 0.1 -a 0.9``), or 1 with ``ce`` at 1.
    ``default_weight`` 1: Hinton et al.'s unweighted sum, for configs that give none.
    """

    default_weight = 1.0

    def __init__(self, student_layers: list[str] | None = None,
                 teacher_layers: list[str] | None = None,
                 temperature: float = 4.0, start_epoch: int = 0):
        super().__init__(student_layers, teacher_layers)
        self.temperature = temperature
        self.start_epoch = start_epoch

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        if inputs.epoch < self.start_epoch:
            return inputs.student_logits.new_zeros(())
        return kd_divergence(inputs.student_logits, inputs.teacher_logits, self.temperature)

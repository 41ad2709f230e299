"""Cross-entropy with the ground-truth labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgedistill.losses.base import LossInputs, LossTerm
from edgedistill.losses.registry import register


@register("ce")
class CrossEntropy(LossTerm):
    """Cross-entropy between student logits and labels, optionally label-smoothed.

    The supervised term most distillation recipes keep next to the transfer terms. Label
    smoothing follows Szegedy, Vanhoucke, Ioffe, Shlens and Wojna, "Rethinking the
    Inception Architecture for Computer Vision", CVPR 2016 (0.1 there; 0 here).

    Params: ``label_smoothing`` (0.0), ``start_epoch`` (0): the term is zero before this
    epoch, which is how the second FitNets stage is scheduled (see ``fitnet``).
    ``default_weight`` 1: the plain supervised loss, as every reference recipe keeps it
    beside a feature term (mdistiller's CE_WEIGHT 1.0; 0.1 next to KD, see ``kd``).
    """

    needs_teacher = False
    default_weight = 1.0

    def __init__(self, student_layers: list[str] | None = None,
                 teacher_layers: list[str] | None = None,
                 label_smoothing: float = 0.0, start_epoch: int = 0):
        super().__init__(student_layers, teacher_layers)
        self.label_smoothing = label_smoothing
        self.start_epoch = start_epoch

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        if inputs.epoch < self.start_epoch:
            return inputs.student_logits.new_zeros(())
        return F.cross_entropy(inputs.student_logits, inputs.targets,
                               label_smoothing=self.label_smoothing)

"""Activation-boundary distillation: make student neurons switch on where the teacher's do."""

from __future__ import annotations

import torch
from torch import nn

from edgedistill.losses.base import LossInputs
from edgedistill.losses.common import FeatureTerm, as_map, conv_adaptor, match_spatial
from edgedistill.losses.registry import register


def boundary_loss(s: torch.Tensor, t: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean squared hinge: push s above +margin where t > 0 and below -margin where t <= 0."""
    on = t > 0
    wrong_off = (s + margin).pow(2) * ((s > -margin) & ~on)
    wrong_on = (s - margin).pow(2) * ((s <= margin) & on)
    return (wrong_off + wrong_on).mean()


@register("ab")
class ActivationBoundary(FeatureTerm):
    """Activation boundaries: margin hinge on the teacher's neuron on/off pattern, via a connector.

    Heo, Lee, Yun and Choi, "Knowledge Transfer via Distillation of Activation
    Boundaries Formed by Hidden Neurons", AAAI 2019. What a ReLU network computes is
    fixed by which neurons fire, so the student (through a 1x1 conv + BN connector) is
    trained to reproduce the teacher's on/off pattern with a margin, using the paper's
    differentiable squared-hinge alternative. Hook *pre-activation* tensors (the input
    of a ReLU, e.g. a BatchNorm output). Spatial sizes are pooled to the smaller one.
    The loss is a mean over elements (the paper sums; the mean keeps layers of
    different sizes comparable), summed over pairs.

    Params: ``margin`` (1.0, the paper's), ``batch_norm`` (True, connector BN),
    ``stage_epochs`` (None; the paper uses AB as an initialisation stage before CE/KD:
    set ``stage_epochs: N`` here and ``start_epoch: N`` on ``ce``/``kd``). Usual layers:
    pre-ReLU outputs at the end of each residual group. ``default_weight`` 1: Tian et
    al.'s CRD benchmark (``-b 1``, after its AB initialisation stage).
    """

    default_weight = 1.0

    def __init__(self, student_layers: list[str] | None = None,
                 teacher_layers: list[str] | None = None, margin: float = 1.0,
                 batch_norm: bool = True, stage_epochs: int | None = None):
        super().__init__(student_layers, teacher_layers)
        self.margin = margin
        self.batch_norm = batch_norm
        self.stage_epochs = stage_epochs
        self.connectors = nn.ModuleList()

    def build(self, student_shapes: list[torch.Size], teacher_shapes: list[torch.Size]) -> None:
        super().build(student_shapes, teacher_shapes)
        self.connectors = nn.ModuleList(
            conv_adaptor(s[1], t[1], self.batch_norm)
            for s, t in zip(student_shapes, teacher_shapes, strict=True)
        )

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        if self.stage_epochs is not None and inputs.epoch >= self.stage_epochs:
            return inputs.student_logits.new_zeros(())
        self.require_built(self.connectors)
        loss = inputs.student_logits.new_zeros(())
        for connector, (s, t) in zip(self.connectors, self.pairs(inputs), strict=True):
            s, t = match_spatial(as_map(s), as_map(t))
            loss = loss + boundary_loss(connector(s), t, self.margin)
        return loss

"""FitNets hints: regress intermediate student features onto the teacher's."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.losses.base import LossInputs
from edgedistill.losses.common import FeatureTerm, as_map, conv_adaptor, match_spatial
from edgedistill.losses.registry import register


@register("fitnet")
class FitNet(FeatureTerm):
    """FitNets hint: a learned 1x1 conv (+BN) regressor maps student features onto the teacher's.

    Romero, Ballas, Kahou, Chassang, Gatta and Bengio, "FitNets: Hints for Thin Deep
    Nets", ICLR 2015. The regressor lets a thinner student be guided by a wider teacher
    layer; the loss is the mean squared error between regressed student features and
    teacher features, summed over layer pairs. Maps of different spatial size are
    average-pooled to the smaller one; embeddings [B, C] are treated as 1x1 maps.

    Params: ``batch_norm`` (True: BatchNorm after the regressor, which keeps the
    regression target scale-free at the start), ``stage_epochs`` (None: always active;
    N: active while ``epoch < N``, zero afterwards).

    The paper's two stages are scheduled from the config alone: give ``fitnet``
    ``stage_epochs: N`` and give ``kd`` (and ``ce``) ``start_epoch: N``. During stage 1
    only the hint produces gradients, and those reach only the student layers up to the
    hinted one (and the regressor), exactly as the paper's stage 1 trains that part;
    layers above get no gradient, which optimizers skip. From epoch N the hint returns
    zero and KD trains the whole student. The paper hints the teacher's middle layer
    into the student's middle layer. ``default_weight`` 100: Tian et al.'s CRD benchmark
    (``-b 100``) and mdistiller's ``CFG.FITNET.LOSS.FEAT_WEIGHT = 100.0``.
    """

    default_weight = 100.0

    def __init__(self, student_layers: list[str] | None = None,
                 teacher_layers: list[str] | None = None, batch_norm: bool = True,
                 stage_epochs: int | None = None):
        super().__init__(student_layers, teacher_layers)
        self.batch_norm = batch_norm
        self.stage_epochs = stage_epochs
        self.regressors = nn.ModuleList()

    def build(self, student_shapes: list[torch.Size], teacher_shapes: list[torch.Size]) -> None:
        super().build(student_shapes, teacher_shapes)
        self.regressors = nn.ModuleList(
            conv_adaptor(s[1], t[1], self.batch_norm)
            for s, t in zip(student_shapes, teacher_shapes, strict=True)
        )

    def hint_loss(self, inputs: LossInputs) -> torch.Tensor:
        self.require_built(self.regressors)
        loss = inputs.student_logits.new_zeros(())
        for regressor, (s, t) in zip(self.regressors, self.pairs(inputs), strict=True):
            s, t = match_spatial(as_map(s), as_map(t))
            loss = loss + F.mse_loss(regressor(s), t)
        return loss

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        if self.stage_epochs is not None and inputs.epoch >= self.stage_epochs:
            return inputs.student_logits.new_zeros(())
        return self.hint_loss(inputs)

"""Similarity-preserving KD: match the batch's pairwise-similarity (Gram) matrices."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgedistill.losses.base import LossInputs
from edgedistill.losses.common import FeatureTerm
from edgedistill.losses.registry import register


def similarity(x: torch.Tensor) -> torch.Tensor:
    """Row-L2-normalised Gram matrix of the flattened batch, [B, B]."""
    flat = x.flatten(1)
    return F.normalize(flat @ flat.t(), dim=1)


@register("sp")
class SimilarityPreserving(FeatureTerm):
    """Similarity-preserving KD: squared Frobenius distance of normalised batch Gram matrices.

    Tung and Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019. Samples
    that excite the teacher similarly should excite the student similarly; since the
    Gram matrix is [B, B] the two layers may have any shapes, but the batch sizes must
    match. Loss per pair: ||G_s - G_t||_F^2 / B^2, summed over pairs.

    No params. The paper's gamma = 3000 is ``default_weight``. Usual layer: the last
    residual group's output (or any, on both sides).
    """

    ranks = None
    default_weight = 3000.0

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        loss = inputs.student_logits.new_zeros(())
        for s, t in self.pairs(inputs):
            diff = similarity(s) - similarity(t)
            loss = loss + diff.pow(2).sum() / s.shape[0] ** 2
        return loss

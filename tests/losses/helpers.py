"""Shared builders for the loss tests."""

from __future__ import annotations

import torch

from edgedistill.losses import LossInputs, LossTerm, build_loss


def make_inputs(student_features=(), teacher_features=(), student_logits=None,
                teacher_logits=None, targets=None, indices=None, epoch=0) -> LossInputs:
    batch = (student_logits if student_logits is not None else student_features[0]).shape[0]
    if student_logits is None:
        student_logits = torch.zeros(batch, 3, dtype=student_features[0].dtype)
    return LossInputs(
        student_logits=student_logits,
        teacher_logits=teacher_logits,
        student_features=list(student_features),
        teacher_features=list(teacher_features),
        targets=targets if targets is not None else torch.zeros(batch, dtype=torch.long),
        indices=indices if indices is not None else torch.arange(batch),
        epoch=epoch,
    )


def built(name: str, student_features, teacher_features, **params) -> LossTerm:
    """A term for len(features) layer pairs, built from the given tensors' shapes."""
    n = len(student_features)
    term = build_loss(name, student_layers=[f"s{i}" for i in range(n)],
                      teacher_layers=[f"t{i}" for i in range(n)], **params)
    term.build([f.shape for f in student_features], [f.shape for f in teacher_features])
    return term

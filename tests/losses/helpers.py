"""Shared builders for the loss tests."""

from __future__ import annotations

import contextlib

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


@contextlib.contextmanager
def forgetting_plugin_losses():
    """Loss entries a test's plugins register are removed afterwards, so later tests in
    the process (``LOSSES.names()`` == the built-ins) see the built-ins only."""
    from edgedistill.losses import LOSSES
    from edgedistill.losses.catalog import builtins

    before = set(LOSSES.names())
    try:
        yield
    finally:
        for name in set(LOSSES.names()) - before - set(builtins()):
            for table in (LOSSES._items, LOSSES._descriptions, LOSSES._settings, LOSSES._origins):
                table.pop(name, None)

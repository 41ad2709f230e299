"""The contract every distillation loss term follows.

A term is an ``nn.Module`` so that its adaptors (regressors, projection heads,
queues) are trained and checkpointed with the student. The Distiller:

1. builds the term from the config: ``cls(student_layers=..., teacher_layers=..., **params)``;
2. runs one dry forward pass and calls ``term.build(student_shapes, teacher_shapes)``
   with the shapes of the hooked tensors (batch dimension included) so the term can
   create adaptors before the optimizer exists;
3. on every step calls ``term(LossInputs)`` and multiplies the result by the
   configured weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LossInputs:
    """What one loss term sees on one step."""

    student_logits: torch.Tensor
    teacher_logits: torch.Tensor | None
    student_features: list[torch.Tensor]
    teacher_features: list[torch.Tensor]
    targets: torch.Tensor
    indices: torch.Tensor
    epoch: int = 0


class LossTerm(nn.Module):
    """Base class; subclasses override ``forward`` and, when they own adaptors, ``build``."""

    needs_teacher: bool = True
    needs_features: bool = False

    def __init__(self, student_layers: list[str] | None = None,
                 teacher_layers: list[str] | None = None):
        super().__init__()
        self.student_layers = list(student_layers or [])
        self.teacher_layers = list(teacher_layers or [])

    def build(self, student_shapes: list[torch.Size], teacher_shapes: list[torch.Size]) -> None:
        """Create adaptors from the hooked tensors' shapes. Default: nothing to build."""

    def forward(self, inputs: LossInputs) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

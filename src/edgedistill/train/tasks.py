"""Training tasks: what the Trainer optimizes. A task maps a batch to
(logits, dict of named losses); the Distiller is the other task."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Supervised(nn.Module):
    """Plain supervised training: one cross-entropy term."""

    def __init__(self, model: nn.Module, label_smoothing: float = 0.0):
        super().__init__()
        self.model = model
        self.label_smoothing = label_smoothing

    @property
    def eval_model(self) -> nn.Module:
        return self.model

    def forward(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.model(batch.images)
        loss = F.cross_entropy(logits, batch.labels, label_smoothing=self.label_smoothing)
        return logits, {"ce": loss}

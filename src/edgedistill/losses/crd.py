"""Contrastive representation distillation with a fixed-length queue of negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.losses.base import LossInputs
from edgedistill.losses.common import FeatureTerm, embedding
from edgedistill.losses.registry import register


@register("crd")
class ContrastiveRepresentation(FeatureTerm):
    """CRD: InfoNCE between student and teacher embeddings, negatives from a fixed-length queue.

    Tian, Krishnan and Isola, "Contrastive Representation Distillation", ICLR 2020. Linear
    heads project both embeddings (feature maps are global-average-pooled) to
    ``feat_dim`` and L2-normalise them. For each student embedding the positive is the
    teacher embedding of the same sample; negatives are the other samples of the batch
    and a queue of past teacher embeddings; symmetrically for each teacher embedding
    against student negatives. The two cross-entropies are summed, as CRD sums its two
    directions.

    Differences from the paper, on purpose: the paper keeps a memory bank with one slot
    per dataset sample (memory grows with the dataset) and the NCE objective; here the
    queue has a fixed length (MoCo-style, memory independent of dataset size) and the
    objective is InfoNCE. Queue entries carry their sample index so a sample's own stale
    copies are never used as its negatives, and empty slots are masked until filled. The
    queue advances only in training mode and is a set of buffers, so it is checkpointed.

    Params: ``feat_dim`` (128), ``queue_size`` (4096; the paper draws 16384 negatives),
    ``temperature`` (0.07). ``default_weight`` 0.8 is the paper's beta. Usual layer: the
    penultimate embedding on both sides.
    """

    default_weight = 0.8

    def __init__(self, student_layers: list[str] | None = None,
                 teacher_layers: list[str] | None = None, feat_dim: int = 128,
                 queue_size: int = 4096, temperature: float = 0.07):
        super().__init__(student_layers, teacher_layers)
        self.feat_dim = feat_dim
        self.queue_size = queue_size
        self.temperature = temperature
        self.student_heads = nn.ModuleList()
        self.teacher_heads = nn.ModuleList()
        pairs = len(self.student_layers)
        self.register_buffer("student_queue", torch.zeros(pairs, queue_size, feat_dim))
        self.register_buffer("teacher_queue", torch.zeros(pairs, queue_size, feat_dim))
        self.register_buffer("queue_indices", torch.full((queue_size,), -1, dtype=torch.long))
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))

    def build(self, student_shapes: list[torch.Size], teacher_shapes: list[torch.Size]) -> None:
        super().build(student_shapes, teacher_shapes)
        self.student_heads = nn.ModuleList(nn.Linear(s[1], self.feat_dim) for s in student_shapes)
        self.teacher_heads = nn.ModuleList(nn.Linear(t[1], self.feat_dim) for t in teacher_shapes)

    def info_nce(self, anchors: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor,
                 indices: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of picking key i for anchor i among the batch's keys and the queue."""
        candidates = torch.cat([keys, queue.to(keys.dtype)])
        candidate_indices = torch.cat([indices, self.queue_indices])
        logits = anchors @ candidates.t() / self.temperature
        same_sample = candidate_indices.unsqueeze(0) == indices.unsqueeze(1)
        positive = torch.eye(len(anchors), candidates.shape[0], dtype=torch.bool,
                             device=anchors.device)
        invalid = (same_sample & ~positive) | (candidate_indices < 0).unsqueeze(0)
        logits = logits.masked_fill(invalid, float("-inf"))
        return F.cross_entropy(logits, torch.arange(len(anchors), device=anchors.device))

    @torch.no_grad()
    def enqueue(self, student: list[torch.Tensor], teacher: list[torch.Tensor],
                indices: torch.Tensor) -> None:
        """Overwrite the oldest slots with this batch (its last ``queue_size`` rows if larger)."""
        n = min(len(indices), self.queue_size)
        slots = (self.queue_pointer + torch.arange(n, device=indices.device)) % self.queue_size
        for i, (s, t) in enumerate(zip(student, teacher, strict=True)):
            self.student_queue[i, slots] = s[-n:].detach().to(self.student_queue.dtype)
            self.teacher_queue[i, slots] = t[-n:].detach().to(self.teacher_queue.dtype)
        self.queue_indices[slots] = indices[-n:]
        self.queue_pointer.copy_((self.queue_pointer + n) % self.queue_size)

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        self.require_built(self.student_heads)
        indices = inputs.indices.to(self.queue_indices.device, torch.long)
        students, teachers = [], []
        loss = inputs.student_logits.new_zeros(())
        for i, (s, t) in enumerate(self.pairs(inputs)):
            e_s = F.normalize(self.student_heads[i](embedding(s)), dim=1)
            e_t = F.normalize(self.teacher_heads[i](embedding(t)), dim=1)
            loss = loss + self.info_nce(e_s, e_t, self.teacher_queue[i], indices)
            loss = loss + self.info_nce(e_t, e_s, self.student_queue[i], indices)
            students.append(e_s)
            teachers.append(e_t)
        if self.training:
            self.enqueue(students, teachers, indices)
        return loss

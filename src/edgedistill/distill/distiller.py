"""The Distiller: student + trainable adaptors + loss terms, as one ``nn.Module``.

``forward(batch)`` returns the student's logits and a dict of named, weighted loss
terms; the Trainer only sums and logs them. The teacher is reached only through a
teacher source, so the same Distiller trains against an in-process teacher, a cache
or a remote pool. Features are taken with forward hooks by module path; models are
never edited.
"""

from __future__ import annotations

import torch
from torch import nn

from edgedistill.config import LossConfig
from edgedistill.distill.sources import TeacherSource
from edgedistill.errors import UsageError
from edgedistill.losses import LOSSES, LossInputs


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


class Distiller(nn.Module):
    def __init__(self, student: nn.Module, teacher_spec_model: nn.Module, source: TeacherSource,
                 losses: list[LossConfig]):
        from edgedistill.models import FeatureExtractor, resolve_layer_aliases

        super().__init__()
        if not losses:
            raise UsageError("losses: give at least one loss term, e.g. [{name: ce}, {name: kd}]")
        self.student = student
        self.source = source
        self.terms = nn.ModuleDict()
        self.weights: dict[str, float] = {}
        self.layers: dict[str, tuple[list[str], list[str]]] = {}
        for cfg in losses:
            label = cfg.label or cfg.name
            if label in self.terms:
                raise UsageError(f"losses: two terms are called {label!r}; give one a `label`")
            s_layers = resolve_layer_aliases(student, cfg.student_layers)
            t_layers = resolve_layer_aliases(teacher_spec_model, cfg.teacher_layers)
            cls = LOSSES.get(cfg.name)
            try:
                term = cls(student_layers=s_layers, teacher_layers=t_layers, **cfg.params)
            except TypeError as err:
                raise UsageError(f"losses[{label}].params: {err}") from None
            self.terms[label.replace(".", "_")] = term
            weight = cfg.weight if cfg.weight is not None else getattr(cls, "default_weight", 1.0)
            self.weights[label.replace(".", "_")] = weight
            self.layers[label] = (s_layers, t_layers)
        self.student_layers = _unique([p for t in self.terms.values() for p in t.student_layers])
        self.teacher_layers = _unique([p for t in self.terms.values() for p in t.teacher_layers])
        self.needs_teacher = any(t.needs_teacher for t in self.terms.values())
        self.hooks = FeatureExtractor(student, self.student_layers) if self.student_layers else None
        self._built = False

    @property
    def eval_model(self) -> nn.Module:
        return self.student

    def setup(self, train_pipe, sample_batch) -> None:
        """Attach the teacher source and build adaptors from one dry forward pass."""
        self.source.attach(self.teacher_layers, train_pipe)
        was_training = self.student.training
        self.student.eval()
        with torch.no_grad():
            self.student(sample_batch.images)
            s_feats = self._student_features()
            teacher = self.source.outputs(sample_batch) if self.needs_teacher else None
        self.student.train(was_training)
        for term in self.terms.values():
            s_shapes = [s_feats[p].shape for p in term.student_layers]
            t_shapes = [teacher.features[p].shape for p in term.teacher_layers] if teacher else []
            term.build(s_shapes, t_shapes)
        self._built = True

    def _student_features(self) -> dict[str, torch.Tensor]:
        return self.hooks.features if self.hooks else {}

    def forward(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not self._built:
            raise RuntimeError("Distiller.setup() must run before training")
        logits = self.student(batch.images)
        s_feats = self._student_features()
        teacher = self.source.timed_outputs(batch) if self.needs_teacher else None
        losses = {}
        with torch.autocast(logits.device.type, enabled=False):
            for label, term in self.terms.items():
                inputs = LossInputs(
                    student_logits=logits.float(),
                    teacher_logits=teacher.logits.float() if teacher else None,
                    student_features=[s_feats[p].float() for p in term.student_layers],
                    teacher_features=[teacher.features[p].float() for p in term.teacher_layers]
                    if teacher else [],
                    targets=batch.labels, indices=batch.indices, epoch=batch.epoch)
                losses[label] = self.weights[label] * term(inputs)
        return logits, losses

    def epoch_stats(self) -> dict[str, float]:
        return self.source.stats()

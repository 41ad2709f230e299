"""What the feature-based terms share: layer pairing, shape checks and spatial matching.

Shapes are checked in ``build`` so that a layer choice that cannot work fails on the
Distiller's dry run, with a message naming the term, both layers and both shapes, instead
of as a broadcasting error deep inside a training step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgedistill.errors import UsageError
from edgedistill.losses.base import LossInputs, LossTerm

_RANK_NAMES = {2: "embeddings [B, C]", 4: "feature maps [B, C, H, W]"}


class FeatureTerm(LossTerm):
    """A term that compares ``student_layers[i]`` with ``teacher_layers[i]`` for every ``i``.

    ``ranks`` lists the tensor ranks the method understands (``None``: any, the tensor is
    flattened per sample). ``default_weight`` is the weight the method's reference
    benchmark used, for configs that give none.
    """

    needs_features = True
    ranks: tuple[int, ...] | None = (2, 4)
    default_weight = 1.0
    name = "feature term"

    def __init__(self, student_layers: list[str] | None = None,
                 teacher_layers: list[str] | None = None):
        super().__init__(student_layers, teacher_layers)
        if not self.student_layers or len(self.student_layers) != len(self.teacher_layers):
            raise UsageError(
                f"loss {self.name!r} needs student_layers and teacher_layers of the same, "
                f"non-zero length; got {self.student_layers} and {self.teacher_layers}"
            )

    def build(self, student_shapes: list[torch.Size], teacher_shapes: list[torch.Size]) -> None:
        """Check every pair; subclasses call this first, then create their adaptors."""
        if len(student_shapes) != len(self.student_layers) or len(teacher_shapes) != len(
            self.teacher_layers
        ):
            raise UsageError(
                f"loss {self.name!r}: got {len(student_shapes)} student and "
                f"{len(teacher_shapes)} teacher shapes for layers {self.student_layers} "
                f"and {self.teacher_layers}"
            )
        for i, (s, t) in enumerate(zip(student_shapes, teacher_shapes, strict=True)):
            self.check_pair(i, s, t)

    def check_pair(self, i: int, s: torch.Size, t: torch.Size) -> None:
        if self.ranks is not None:
            for shape in (s, t):
                if len(shape) not in self.ranks:
                    wanted = " or ".join(_RANK_NAMES[r] for r in self.ranks)
                    raise self.shape_error(
                        i, s, t, f"it needs {wanted}",
                        "hook a different layer, or use a term with an adaptor such as 'fitnet'",
                    )
        if s[0] != t[0]:
            raise self.shape_error(
                i, s, t, "batch sizes differ",
                "hook layers whose outputs keep one row per sample in the first dimension",
            )

    def shape_error(self, i: int, s: torch.Size, t: torch.Size, problem: str,
                    fix: str) -> UsageError:
        return UsageError(
            f"loss {self.name!r}: student layer {self.student_layers[i]!r} has shape "
            f"{tuple(s)} and teacher layer {self.teacher_layers[i]!r} has shape {tuple(t)}: "
            f"{problem}; {fix}"
        )

    def require_built(self, adaptors: nn.ModuleList) -> None:
        """Adaptor terms cannot run before ``build``; fail loudly rather than return nothing."""
        if len(adaptors) != len(self.student_layers):
            raise RuntimeError(f"loss {self.name!r} has no adaptors yet: call build() first")

    def pairs(self, inputs: LossInputs) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(student, teacher) tensors of each layer pair; the teacher side carries no gradient."""
        out = []
        features = zip(inputs.student_features, inputs.teacher_features, strict=True)
        for i, (s, t) in enumerate(features):
            if s.shape[0] != t.shape[0]:
                self.check_pair(i, s.shape, t.shape)
            out.append((s, t.detach()))
        return out


def as_map(x: torch.Tensor) -> torch.Tensor:
    """View an embedding [B, C] as a 1x1 feature map so convolutional adaptors accept it."""
    return x if x.dim() == 4 else x.reshape(x.shape[0], -1, 1, 1)


def embedding(x: torch.Tensor) -> torch.Tensor:
    """Global-average-pool a feature map to [B, C]; embeddings pass through."""
    return x if x.dim() == 2 else x.mean(dim=tuple(range(2, x.dim())))


def pool_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x if tuple(x.shape[-2:]) == size else F.adaptive_avg_pool2d(x, size)


def match_spatial(s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool the larger map, per axis, to the smaller one's size.

    Pooling the larger map (rather than upsampling the smaller) never invents detail the
    coarser network did not have, which is what the reference implementations do.
    """
    size = (min(s.shape[-2], t.shape[-2]), min(s.shape[-1], t.shape[-1]))
    return pool_to(s, size), pool_to(t, size)


def conv_adaptor(in_channels: int, out_channels: int, batch_norm: bool) -> nn.Sequential:
    """1x1 convolution (+ BatchNorm) mapping student channels to teacher channels."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    return nn.Sequential(*layers)

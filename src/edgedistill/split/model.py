"""``SplitModel``: a trained ``BottleneckHead`` in front of the frozen teacher's tail.

The model owns the head and the whole teacher (frozen, always in eval mode); the
teacher's head and tail are ``torch.fx`` views that share the teacher's modules and
are not registered again, so a state dict holds each weight once and one
``model.safetensors`` rebuilds everything (``load_split``). The parts that run on
each machine are ``device_part`` (the encoder) and ``server_part`` (decoder + tail).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgedistill.errors import UsageError
from edgedistill.registry import Registry
from edgedistill.split.bottleneck import BottleneckHead
from edgedistill.split.entropy import EntropyHead, fit_tables
from edgedistill.split.splitter import resolve_split_point, split_model

HEADS = Registry("split head", skip=("in_shape", "out_shape", "channels"))
HEADS.register("8bit", "encoder-decoder head, bottleneck sent as 8-bit codes")(BottleneckHead)
HEADS.register("entropy", "encoder-decoder head, bottleneck entropy coded")(EntropyHead)


class ServerPart(nn.Module):
    """Decoder + teacher tail: bottleneck in, logits out (what the edge server runs)."""

    def __init__(self, decoder: nn.Module, tail: nn.Module):
        super().__init__()
        self.decoder = decoder
        self.tail = tail

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.tail(self.decoder(z))


class SplitModel(nn.Module):
    """``tail(head(x))`` with a trainable head and a frozen teacher."""

    def __init__(self, teacher: nn.Module, split_at: str, head: BottleneckHead,
                 keep: list[str] = ()):
        super().__init__()
        if not hasattr(teacher, "spec"):
            raise UsageError("the teacher must be a zoo model (built by create_model)")
        self.split_at = resolve_split_point(teacher, split_at)
        self.head = head
        self.teacher = teacher.eval().requires_grad_(False)
        teacher_head, tail = split_model(teacher, self.split_at, keep)
        self._views = {"teacher_head": teacher_head.eval(), "tail": tail.eval()}
        self.spec = {"kind": "split", "teacher": teacher.spec, "split_at": self.split_at,
                     "head": head.spec}

    @property
    def teacher_head(self) -> nn.Module:
        return self._views["teacher_head"]

    @property
    def tail(self) -> nn.Module:
        return self._views["tail"]

    def train(self, mode: bool = True) -> SplitModel:
        """Only the head ever trains; the teacher keeps its BatchNorm statistics."""
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.head(x))

    @property
    def device_part(self) -> nn.Module:
        return self.head.encoder

    def server_part(self) -> ServerPart:
        return ServerPart(self.head.decoder, self.tail)


def head_output_shape(teacher: nn.Module, split_at: str, input_shape) -> tuple[int, ...]:
    """Shape (without batch) of the teacher's head output for one input of ``input_shape``."""
    head, _ = split_model(teacher, split_at)
    with torch.no_grad():
        return tuple(head(torch.zeros(1, *input_shape)).shape[1:])


def build_split(spec: dict[str, Any]) -> SplitModel:
    """An untrained ``SplitModel`` from the ``spec`` a trained one recorded."""
    from edgedistill.models import create_model

    if spec.get("kind") != "split":
        raise UsageError("these weights are not a split model (no split spec)")
    teacher = create_model(**spec["teacher"])
    head = dict(spec["head"])
    return SplitModel(teacher, spec["split_at"], HEADS.get(head.pop("kind", "8bit"))(**head))


def load_split(run_dir: str | Path) -> SplitModel:
    """A trained split model from a bottleneck's run directory (``RUN/c4``), in eval mode."""
    from edgedistill.errors import CheckpointError
    from edgedistill.train.checkpoint import load_weights

    path = Path(run_dir) / "model.safetensors"
    if not path.is_file():
        raise UsageError(f"{run_dir} holds no trained split model (no model.safetensors)")
    tensors, spec = load_weights(path)
    model = build_split(spec)
    fit_tables(model, tensors)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the recorded split model: "
                              f"{str(err).splitlines()[0]}") from None
    return model.eval()


def read_meta(run_dir: str | Path) -> dict[str, Any]:
    """``split.json`` of a split run: data stats, shapes and the trained bottlenecks."""
    path = Path(run_dir) / "split.json"
    if not path.is_file():
        raise UsageError(f"{run_dir} is not a split run directory (no split.json); make one "
                         "with `edgedistill split train CONFIG`")
    return json.loads(path.read_text())


def bottleneck_dir(run_dir: str | Path, name: str | None) -> Path:
    """The directory of bottleneck ``name`` (e.g. ``c4``); default: the run's chosen one."""
    meta = read_meta(run_dir)
    names = [b["name"] for b in meta["bottlenecks"]]
    name = name or meta.get("chosen")
    if name not in names:
        raise UsageError(f"{run_dir} has no bottleneck {name!r}; trained: {', '.join(names)}")
    return Path(run_dir) / name

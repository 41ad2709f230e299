"""The layer list of a network as an edge runtime executes it, and its peak activation memory.

The forward pass is traced at the ATen level (``TorchDispatchMode``); one real forward
at batch size N costs milliseconds for an edge-sized network. What is recorded mirrors
what ONNX Runtime runs after its graph optimizations: BatchNorm and activations that
directly follow a convolution are folded into it (Conv+BN folding, Conv+activation
fusion), views are free, and every other op is one kernel call. A residual sum of a
convolution's output (with the activation after it) is its own kind, ``conv_add``:
some runtimes fuse it into the convolution (ONNX Runtime's NCHWc kernels on x86) and
others do not, so its cost is left to the fit rather than assumed. Likewise a fused
activation other than ReLU (ReLU6, SiLU, ...) adds a ``conv_act`` op over the output:
ONNX Runtime applies ReLU inside its convolution kernels but ReLU6 as a pass over the
output (MobileNetV2 ran 15-20% slower than the same network with ReLU). Each op carries
its FLOPs (a multiply-add is 2) and the bytes it moves at fp32 (activations in and
out plus weights), the two features the latency model is fitted on.

Peak activation memory is that of a sequential executor that frees each tensor after
its last use and writes fused ops in place: the largest total of live activations at
any op, in elements (``x`` bytes per element at the deployed precision).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

KINDS = ("conv", "pwconv", "dwconv", "linear", "pool", "conv_add", "add", "eltwise", "conv_act")
_FREE = {"view", "_unsafe_view", "reshape", "t", "transpose", "permute", "flatten", "squeeze",
         "unsqueeze", "expand", "detach", "alias", "dropout", "empty", "clone", "contiguous",
         "_to_copy", "lift_fresh"}
_ACTIVATIONS = {"relu", "hardtanh", "clamp", "silu", "sigmoid", "hardswish", "leaky_relu", "gelu"}
_BATCH_NORM = {"native_batch_norm", "_native_batch_norm_legit_no_training", "batch_norm"}
_POOL = {"mean", "_adaptive_avg_pool2d", "avg_pool2d", "max_pool2d", "max_pool2d_with_indices",
         "adaptive_max_pool2d", "amax"}
_LINEAR = {"addmm", "mm", "bmm", "matmul"}
_BINARY = {"add", "sub", "mul", "div"}
FP32 = 4


@dataclass(frozen=True)
class Op:
    """One kernel call: its kind (one of ``KINDS``), FLOPs and fp32 bytes moved; for
    convolutions also the channels in and out, since runtimes pad them to SIMD blocks,
    and the kernel size, stride and output height and width, which set how the work is
    tiled."""

    kind: str
    flops: int
    bytes: int
    cin: int = 0
    cout: int = 0
    kernel: int = 0
    stride: int = 0
    height: int = 0
    width: int = 0


@dataclass(frozen=True)
class Trace:
    """The ops in execution order and the most activation elements alive at once."""

    ops: tuple[Op, ...]
    peak_activation_elements: int


class _Recorder(TorchDispatchMode):
    """Records ops and tensor lifetimes; tensors are keyed by id and kept alive meanwhile."""

    def __init__(self, x: torch.Tensor):
        super().__init__()
        self.ops: list[Op] = []
        self.keep: list[torch.Tensor] = [x]
        self.root: dict[int, int] = {id(x): id(x)}
        self.size: dict[int, int] = {id(x): x.numel()}
        self.born: dict[int, int] = {id(x): 0}
        self.last: dict[int, int] = {id(x): 0}
        self.after_conv: set[int] = set()
        self.after_add: set[int] = set()
        self.step = 0

    def _roots(self, args) -> list[int]:
        flat = [a for a in _flatten(args) if isinstance(a, torch.Tensor)]
        return [self.root[id(a)] for a in flat if id(a) in self.root]

    def _alias(self, out, root: int) -> None:
        for t in _flatten(out):
            if isinstance(t, torch.Tensor):
                self.keep.append(t)
                self.root[id(t)] = root

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__.rstrip("_")
        if name in _FREE:
            roots = self._roots(args[:1])
            if roots:
                self._alias(out, roots[0])
            return out
        roots = self._roots(args)
        if not roots:
            return out  # arithmetic on weights or constants only
        self.step += 1
        for r in roots:
            self.last[r] = self.step
        first = out[0] if isinstance(out, (tuple, list)) else out
        if (name in _ACTIVATIONS | _BATCH_NORM and roots[0] in self.after_conv) or (
                name in _ACTIVATIONS and roots[0] in self.after_add):
            self._alias(out, roots[0])
            if name in _ACTIVATIONS and name != "relu":
                self.ops.append(Op("conv_act", 0, FP32 * 2 * int(first.numel())))
            return out
        op = _op(name, args, first, any(r in self.after_conv for r in roots))
        if op is None:
            return out
        self.ops.append(op)
        key = id(first)
        self._alias(out, key)
        self.size[key], self.born[key], self.last[key] = first.numel(), self.step, self.step
        if op.kind in ("conv", "pwconv", "dwconv"):
            self.after_conv.add(key)
        elif op.kind == "conv_add":
            self.after_add.add(key)
        return out

    def peak(self) -> int:
        keys = list(self.size)
        return peak_elements([self.size[k] for k in keys], [self.born[k] for k in keys],
                             [self.last[k] for k in keys], self.step)


def peak_elements(size: Sequence[int], born: Sequence[int], last: Sequence[int],
                  steps: int) -> int:
    """The most elements alive at once, tensor ``i`` living from op ``born[i]`` to
    ``last[i]`` (inclusive) of ``steps`` ops."""
    events = [0] * (steps + 2)
    for s, b, e in zip(size, born, last, strict=True):
        events[b] += s
        events[e + 1] -= s
    live, peak = 0, 0
    for delta in events:
        live += delta
        peak = max(peak, live)
    return peak


def _flatten(obj) -> list:
    if isinstance(obj, (list, tuple)):
        return [x for item in obj for x in _flatten(item)]
    return [obj]


def _op(name: str, args, out: torch.Tensor, follows_conv: bool) -> Op | None:
    tensors = [a for a in _flatten(args) if isinstance(a, torch.Tensor)]
    if name == "convolution":
        x, w = args[0], args[1]
        groups = args[8]
        flops = 2 * out.numel() * w.shape[1] * w[0, 0].numel()
        kind = ("dwconv" if groups > 1 and groups == x.shape[1]
                else "pwconv" if w[0, 0].numel() == 1 and groups == 1 else "conv")
        moved = x.numel() + out.numel() + w.numel()
        return Op(kind, int(flops), FP32 * int(moved), int(x.shape[1]), int(out.shape[1]),
                  int(w.shape[-1]), int(args[3][-1]), int(out.shape[-2]), int(out.shape[-1]))
    if name in _LINEAR:
        a, b = (args[1], args[2]) if name == "addmm" else (args[0], args[1])
        flops = 2 * a.numel() * b.shape[-1]
        return Op("linear", int(flops), FP32 * int(a.numel() + b.numel() + out.numel()))
    if name in _POOL:
        return Op("pool", 0, FP32 * int(tensors[0].numel() + out.numel()))
    if name in _BINARY and len(tensors) == 2 and all(t.numel() > 1 for t in tensors):
        moved = FP32 * int(sum(t.numel() for t in tensors) + out.numel())
        return Op("conv_add" if follows_conv else "add", 0, moved)
    if name in _BINARY:
        return None  # a scalar bookkeeping op (e.g. a counter), not a layer
    return Op("eltwise", 0, FP32 * int(tensors[0].numel() + out.numel()))


def trace(model: nn.Module, input_shape: Sequence[int]) -> Trace:
    """Trace one eval-mode forward of ``model`` at ``(N, C, H, W)`` on its own device."""
    param = next(model.parameters(), None)
    x = torch.zeros(tuple(input_shape), device=param.device if param is not None else "cpu")
    recorder = _Recorder(x)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), recorder:
            model(x)
    finally:
        model.train(was_training)
    return Trace(tuple(recorder.ops), recorder.peak())

"""Parameters, ops and peak activations of the zoo's CNN families, counted without a model.

A design query weighs hundreds of candidates; building each one and tracing its forward
(``design/trace.py``) took most of its time (42 s of CPU for resnet56's 326). The
families the search derives students from (CIFAR ResNet, WRN, MobileNetV2) are
described here as their forward passes written against :class:`Graph`, a symbolic
executor that applies the tracer's rules: BatchNorm and activations after a
convolution are folded into it, an activation after a residual sum of a convolution
is folded into that ``conv_add``, tensors live from the op that writes them to the
last op that reads them. So each description yields the very ``Op`` list, parameter
count and peak the tracer reports for the built model; ``tests/design`` checks that
equality on candidates of every family. A spec this module does not describe, or whose
options it cannot vouch for, returns None and is built and traced as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgedistill.design.trace import FP32, Op, Trace, peak_elements
from edgedistill.models.zoo import family_of, resolved_options, scale_channels


@dataclass(frozen=True)
class Tensor:
    key: int
    n: int
    c: int
    h: int
    w: int

    @property
    def numel(self) -> int:
        return self.n * self.c * self.h * self.w


class Graph:
    """Records ops, parameters and tensor lifetimes as ``trace._Recorder`` does."""

    def __init__(self, n: int, c: int, h: int, w: int):
        self.ops: list[Op] = []
        self.params = 0
        self.size: list[int] = []
        self.born: list[int] = []
        self.last: list[int] = []
        self.after_conv: set[int] = set()
        self.after_add: set[int] = set()
        self.step = 0
        self.input = self._new(n, c, h, w)

    def _new(self, n: int, c: int, h: int, w: int) -> Tensor:
        t = Tensor(len(self.size), n, c, h, w)
        self.size.append(t.numel)
        self.born.append(self.step)
        self.last.append(self.step)
        return t

    def _read(self, *inputs: Tensor) -> None:
        self.step += 1
        for t in inputs:
            self.last[t.key] = self.step

    def conv(self, x: Tensor, cout: int, k: int, stride: int = 1, groups: int = 1) -> Tensor:
        """A bias-free k x k convolution padded by k // 2 (as every zoo family has)."""
        self._read(x)
        h, w = ((s + 2 * (k // 2) - k) // stride + 1 for s in (x.h, x.w))
        out = self._new(x.n, cout, h, w)
        weights = cout * (x.c // groups) * k * k
        self.params += weights
        kind = ("dwconv" if groups > 1 and groups == x.c
                else "pwconv" if k == 1 and groups == 1 else "conv")
        flops = 2 * out.numel * (x.c // groups) * k * k
        self.ops.append(Op(kind, flops, FP32 * (x.numel + out.numel + weights), x.c, cout,
                           k, stride, h, w))
        self.after_conv.add(out.key)
        return out

    def bn(self, x: Tensor) -> Tensor:
        self.params += 2 * x.c
        return self._pointwise(x, x.key in self.after_conv)

    def act(self, x: Tensor, relu: bool = True) -> Tensor:
        """ReLU, or with ``relu=False`` another activation (ReLU6), which costs a
        ``conv_act`` pass when folded into a convolution."""
        folded = x.key in self.after_conv or x.key in self.after_add
        if folded and not relu:
            self.ops.append(Op("conv_act", 0, FP32 * 2 * x.numel))
        return self._pointwise(x, folded)

    def _pointwise(self, x: Tensor, folded: bool) -> Tensor:
        self._read(x)
        if folded:
            return x
        out = self._new(x.n, x.c, x.h, x.w)
        self.ops.append(Op("eltwise", 0, FP32 * 2 * x.numel))
        return out

    def add(self, a: Tensor, b: Tensor) -> Tensor:
        self._read(a, b)
        out = self._new(a.n, a.c, a.h, a.w)
        kind = "conv_add" if a.key in self.after_conv or b.key in self.after_conv else "add"
        self.ops.append(Op(kind, 0, FP32 * 3 * a.numel))
        if kind == "conv_add":
            self.after_add.add(out.key)
        return out

    def pool(self, x: Tensor) -> Tensor:
        """Global average pooling."""
        self._read(x)
        out = self._new(x.n, x.c, 1, 1)
        self.ops.append(Op("pool", 0, FP32 * (x.numel + out.numel)))
        return out

    def linear(self, x: Tensor, fout: int) -> Tensor:
        """A classifier with bias on the flattened input."""
        self._read(x)
        fin = x.numel // x.n
        out = self._new(x.n, fout, 1, 1)
        self.params += fin * fout + fout
        self.ops.append(Op("linear", 2 * x.numel * fout,
                           FP32 * (x.numel + fin * fout + out.numel)))
        return out

    def result(self) -> tuple[int, Trace]:
        return self.params, Trace(tuple(self.ops), peak_elements(self.size, self.born,
                                                                  self.last, self.step))


def _positive_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _width(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def cifar_resnet(g: Graph, spec: dict, o: dict) -> None:
    """``models/cifar_resnet.py``: stem, three stages of BasicBlocks, pooling, classifier."""
    wide = spec["name"].endswith("x4")
    stem, widths = (32, (64, 128, 256)) if wide else (16, (16, 32, 64))
    depth = int(spec["name"][len("resnet"):len(spec["name"]) - 2 * wide])
    blocks = o["blocks"] if o["blocks"] is not None else [(depth - 2) // 6] * 3
    x = g.act(g.bn(g.conv(g.input, scale_channels(stem, o["width"]), 3)))
    for i, (n, planes) in enumerate(zip(blocks, widths, strict=True)):
        planes = scale_channels(planes, o["width"])
        for j in range(n):
            stride = 2 if i and not j else 1
            out = g.bn(g.conv(g.act(g.bn(g.conv(x, planes, 3, stride))), planes, 3))
            if stride != 1 or x.c != planes:
                x = g.bn(g.conv(x, planes, 1, stride))
            x = g.act(g.add(out, x))
    g.linear(g.pool(x), spec.get("num_classes", 10))


def _cifar_resnet_ok(o: dict) -> bool:
    blocks = o["blocks"]
    return _width(o["width"]) and (blocks is None or (
        isinstance(blocks, (list, tuple)) and len(blocks) == 3
        and all(_positive_int(b) for b in blocks)))


def wrn(g: Graph, spec: dict, o: dict) -> None:
    """``models/wrn.py``: stem, three stages of pre-activation blocks, BN-ReLU, pooling."""
    x = g.conv(g.input, scale_channels(16, o["width"]), 3)
    for i, base in enumerate((16, 32, 64)):
        planes = scale_channels(base * o["widen"], o["width"])
        for j in range((o["depth"] - 4) // 6):
            stride = 2 if i and not j else 1
            pre = g.act(g.bn(x))
            out = g.conv(g.act(g.bn(g.conv(pre, planes, 3, stride))), planes, 3)
            x = g.add(out, x if stride == 1 and x.c == planes else g.conv(pre, planes, 1, stride))
    g.linear(g.pool(g.act(g.bn(x))), spec.get("num_classes", 10))


def _wrn_ok(o: dict) -> bool:
    d, dropout = o["depth"], o["dropout"]
    return (_positive_int(d) and d >= 10 and (d - 4) % 6 == 0 and _positive_int(o["widen"])
            and _width(o["width"]) and isinstance(dropout, (int, float))
            and not isinstance(dropout, bool) and 0 <= dropout < 1)


MOBILENETV2_SETTING = [  # t, c, n, s, as models/mobilenetv2.py sets them
    [1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2],
    [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1],
]


def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's channel rounding for MobileNets (``models._utils._make_divisible``)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def mobilenetv2(g: Graph, spec: dict, o: dict) -> None:
    """``models/mobilenetv2.py``: torchvision's MobileNetV2 with a stride-1 stem."""
    width = o["width_mult"]
    x = g.act(g.bn(g.conv(g.input, make_divisible(32 * width), 3)), relu=False)
    for t, c, n, s in MOBILENETV2_SETTING:
        cout = make_divisible(c * width)
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = int(round(x.c * t))
            y = g.act(g.bn(g.conv(x, hidden, 1)), relu=False) if t != 1 else x
            y = g.act(g.bn(g.conv(y, hidden, 3, stride, groups=hidden)), relu=False)
            y = g.bn(g.conv(y, cout, 1))
            x = g.add(x, y) if stride == 1 and x.c == cout else y
    x = g.act(g.bn(g.conv(x, make_divisible(1280 * max(1.0, width)), 1)), relu=False)
    g.linear(g.pool(x), spec.get("num_classes", 10))


FAMILIES = {"cifar_resnet": (cifar_resnet, _cifar_resnet_ok), "wrn": (wrn, _wrn_ok),
            "mobilenetv2": (mobilenetv2, lambda o: _width(o["width_mult"]))}


def structure(spec: dict, input_shape: tuple[int, int, int, int]) -> tuple[int, Trace] | None:
    """(parameters, trace) of ``spec`` at ``(N, C, H, W)``, or None where it must be traced:
    a family not described here, or options or an input the model itself must judge."""
    described = FAMILIES.get(family_of(spec["name"]).name)
    options = resolved_options(spec)
    if described is None or not described[1](options) or \
            input_shape[1] != spec.get("in_channels", 1):
        return None
    g = Graph(*input_shape)
    described[0](g, spec, options)
    return g.result()

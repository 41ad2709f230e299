"""ONNX Runtime micro-benchmarks: single operators of many shapes, timed on this machine.

Each benchmark is a tiny ONNX graph built directly with ``onnx.helper`` (no export,
so profiling a device needs only onnx and onnxruntime): a chain of ``reps`` identical
ops of one kind, timed as a whole session call. Chains of 1 and 3 ops let the fit
separate the fixed cost of one ``session.run`` from the fixed cost of one op. Convolutions
are followed by their network's activation: ReLU, or ReLU6 for depthwise and expanding
pointwise ones as in MobileNetV2 (ONNX Runtime fuses the first for free, the second as
a pass over the output). Shapes span the channel counts and feature-map sizes of
small-input CNNs (4-256 channels, 4-32 px), aligned and not aligned to SIMD widths.
``GraphBuilder`` also builds the whole calibration networks of ``design/netbench.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgedistill.design.trace import FP32, Op

OPSET = 17


@dataclass(frozen=True)
class Sample:
    """One timed graph: the ops it runs, the milliseconds of one call, and whether it is
    a whole calibration network (``design/netbench.py``) rather than a few ops."""

    name: str
    ops: tuple[Op, ...]
    ms: float
    network: bool = False


def _conv_out(h: int, k: int, stride: int) -> int:
    return (h + 2 * (k // 2) - k) // stride + 1


def make_model(name: str, nodes, x_shape, y_shape, inits) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(x_shape))
    y = helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, list(y_shape))
    graph = helper.make_graph(nodes, name, [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def _weight(name: str, shape, rng: np.random.Generator) -> onnx.TensorProto:
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.1, name)


class GraphBuilder:
    """Appends Conv(+ReLU) and Add nodes to one graph and records the op each one is."""

    def __init__(self, n: int):
        self.n, self.nodes, self.inits, self.ops = n, [], [], []
        self.rng = np.random.default_rng(0)

    def conv(self, src: str, cin: int, cout: int, size: int, k: int, stride: int,
             depthwise: bool, act: str | None) -> tuple[str, int]:
        """Conv followed by ``act`` ("relu", "relu6" or None), as an exported network has it
        after BatchNorm folding."""
        i, g = len(self.nodes), cin if depthwise else 1
        w_shape = [cout, cin // g, k, k]
        self.inits += [_weight(f"w{i}", w_shape, self.rng), _weight(f"b{i}", [cout], self.rng)]
        out = _conv_out(size, k, stride)
        self.nodes.append(helper.make_node("Conv", [src, f"w{i}", f"b{i}"], [f"c{i}"],
                                           kernel_shape=[k, k], strides=[stride, stride],
                                           group=g, pads=[k // 2] * 4))
        flops = 2 * self.n * cout * out * out * (cin // g) * k * k
        moved = self.n * (cin * size * size + cout * out * out) + int(np.prod(w_shape))
        kind = "dwconv" if depthwise else ("pwconv" if k == 1 else "conv")
        self.ops.append(Op(kind, flops, FP32 * moved, cin, cout, k, stride, out, out))
        if act == "relu6":
            self.ops.append(Op("conv_act", 0, FP32 * 2 * self.n * cout * out * out))
            return self._relu6(f"c{i}"), out
        return (self._relu(f"c{i}") if act else f"c{i}"), out

    def residual(self, a: str, b: str, elements: int, relu: bool) -> str:
        i = len(self.nodes)
        self.nodes.append(helper.make_node("Add", [a, b], [f"a{i}"]))
        self.ops.append(Op("conv_add", 0, FP32 * 3 * self.n * elements))
        return self._relu(f"a{i}") if relu else f"a{i}"

    def _relu(self, src: str) -> str:
        self.nodes.append(helper.make_node("Relu", [src], [f"{src}r"]))
        return f"{src}r"

    def _relu6(self, src: str) -> str:
        if not any(t.name == "zero" for t in self.inits):
            self.inits += [numpy_helper.from_array(np.array(v, np.float32), name)
                           for v, name in ((0, "zero"), (6, "six"))]
        self.nodes.append(helper.make_node("Clip", [src, "zero", "six"], [f"{src}r"]))
        return f"{src}r"

    def bn_relu(self, src: str, c: int, size: int) -> str:
        """BatchNormalization and ReLU that follow no convolution (a pre-activation)."""
        i = len(self.nodes)
        names = [f"s{i}", f"t{i}", f"m{i}", f"v{i}"]
        self.inits += [_weight(x, [c], self.rng) for x in names[:3]]
        self.inits.append(numpy_helper.from_array(np.ones(c, np.float32), names[3]))
        self.nodes.append(helper.make_node("BatchNormalization", [src, *names], [f"n{i}"]))
        self.ops += [Op("eltwise", 0, FP32 * 2 * self.n * c * size * size)] * 2
        return self._relu(f"n{i}")

    def head(self, src: str, c: int, size: int, classes: int) -> str:
        """Global average pooling, flatten and a classifier, as the zoo's networks end."""
        i = len(self.nodes)
        self.inits += [_weight(f"fw{i}", [classes, c], self.rng),
                       _weight(f"fb{i}", [classes], self.rng)]
        self.nodes += [helper.make_node("GlobalAveragePool", [src], [f"p{i}"]),
                       helper.make_node("Flatten", [f"p{i}"], [f"f{i}"]),
                       helper.make_node("Gemm", [f"f{i}", f"fw{i}", f"fb{i}"], [f"g{i}"],
                                        transB=1)]
        self.ops += [Op("pool", 0, FP32 * self.n * (c * size * size + c)),
                     Op("linear", 2 * self.n * c * classes,
                        FP32 * (self.n * c + c * classes + self.n * classes))]
        return f"g{i}"


def conv_graph(n: int, cin: int, cout: int, h: int, k: int, stride: int, depthwise: bool,
               reps: int, act: str = "relu") -> tuple[onnx.ModelProto, list[Op]]:
    """``reps`` Conv+``act``; the first maps cin -> cout at ``stride``, the rest keep the
    shape."""
    b, src, c, size = GraphBuilder(n), "input", cin, h
    for i in range(reps):
        src, size = b.conv(src, c, cout, size, k, stride if i == 0 else 1, depthwise, act)
        c = cout
    return make_model("conv", b.nodes, [n, cin, h, h], [n, cout, size, size], b.inits), b.ops


def residual_graph(n: int, c: int, h: int, inverted: bool, reps: int
                   ) -> tuple[onnx.ModelProto, list[Op]]:
    """A stem conv, then ``reps`` residual blocks: ResNet's basic block or MobileNetV2's
    inverted one (expansion 4, ReLU6). The stem makes the skip input an op's output, as in a
    network, so the runtime may fuse the sum as it would there."""
    b = GraphBuilder(n)
    src, _ = b.conv("input", c, c, h, 3, 1, False, "relu")
    for _ in range(reps):
        if inverted:
            y, _ = b.conv(src, c, 4 * c, h, 1, 1, False, "relu6")
            y, _ = b.conv(y, 4 * c, 4 * c, h, 3, 1, True, "relu6")
            y, _ = b.conv(y, 4 * c, c, h, 1, 1, False, None)
        else:
            y, _ = b.conv(src, c, c, h, 3, 1, False, "relu")
            y, _ = b.conv(y, c, c, h, 3, 1, False, None)
        src = b.residual(y, src, c * h * h, relu=not inverted)
    return make_model("residual", b.nodes, [n, c, h, h], [n, c, h, h], b.inits), b.ops


def linear_graph(n: int, fin: int, fout: int) -> tuple[onnx.ModelProto, list[Op]]:
    rng = np.random.default_rng(0)
    inits = [_weight("w", [fin, fout], rng), _weight("b", [fout], rng)]
    nodes = [helper.make_node("Gemm", ["input", "w", "b"], ["g"])]
    op = Op("linear", 2 * n * fout * fin, FP32 * (n * fin + n * fout + fin * fout))
    return make_model("linear", nodes, [n, fin], [n, fout], inits), [op]


def pool_graph(n: int, c: int, h: int) -> tuple[onnx.ModelProto, list[Op]]:
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["p"])]
    return (make_model("pool", nodes, [n, c, h, h], [n, c, 1, 1], []),
            [Op("pool", 0, FP32 * (n * c * h * h + n * c))])


def eltwise_graph(kind: str, n: int, c: int, h: int, reps: int
                  ) -> tuple[onnx.ModelProto, list[Op]]:
    """``add``: y = y + x repeated (a residual sum); ``eltwise``: Sigmoid and ReLU alternating."""
    nodes, src = [], "input"
    for i in range(reps):
        if kind == "add":
            nodes.append(helper.make_node("Add", [src, "input"], [f"e{i}"]))
        else:
            op_type = "Relu" if i % 2 else "Sigmoid"
            nodes.append(helper.make_node(op_type, [src], [f"e{i}"]))
        src = f"e{i}"
    moved = (3 if kind == "add" else 2) * n * c * h * h
    return (make_model(kind, nodes, [n, c, h, h], [n, c, h, h], []),
            [Op(kind, 0, FP32 * moved)] * reps)


CONV_SHAPES = [  # (cin, cout, h, k, stride)
    (1, 16, 28, 3, 1), (3, 32, 32, 3, 1), (4, 4, 28, 3, 1), (6, 6, 28, 3, 1),
    (8, 8, 28, 3, 1), (12, 12, 28, 3, 1), (16, 16, 28, 3, 1), (16, 16, 32, 3, 1),
    (24, 24, 14, 3, 1), (16, 32, 28, 3, 2), (32, 32, 14, 3, 1), (48, 48, 14, 3, 1),
    (32, 64, 14, 3, 2), (64, 64, 7, 3, 1), (64, 64, 8, 3, 1), (96, 96, 7, 3, 1),
    (128, 128, 7, 3, 1), (128, 128, 4, 3, 1), (256, 256, 4, 3, 1), (8, 16, 28, 3, 2),
]
PW_SHAPES = [(8, 48, 28), (16, 96, 14), (24, 144, 7), (48, 8, 28), (96, 16, 14), (144, 24, 7),
             (32, 192, 7), (112, 1280, 4), (16, 32, 28), (64, 64, 7), (6, 6, 28), (32, 64, 14)]
DW_SHAPES = [(16, 28, 1), (48, 28, 1), (48, 28, 2), (96, 14, 1), (96, 14, 2), (144, 7, 1),
             (192, 7, 1), (336, 4, 1), (6, 28, 1), (24, 14, 1)]
RESIDUAL_SHAPES = [(8, 28), (16, 28), (6, 28), (32, 14), (12, 14), (64, 7), (24, 7), (4, 28)]
LINEAR_SHAPES = [(64, 10), (128, 10), (256, 100), (1280, 10), (512, 512)]
POOL_SHAPES = [(16, 28), (64, 7), (256, 4), (1280, 4), (512, 8)]
ELT_SHAPES = [(16, 28), (32, 14), (64, 7), (6, 28), (128, 8), (48, 28)]


def graphs(batch: int, quick: bool = False) -> Iterator[tuple[str, onnx.ModelProto, list[Op]]]:
    """(name, graph, ops) for every benchmark; ``quick`` keeps every third shape."""
    step = 3 if quick else 1
    convs = [(f"conv{k}x{k}_{ci}-{co}_{h}px_s{s}", ci, co, h, k, s, False, "relu")
             for ci, co, h, k, s in CONV_SHAPES[::step]]
    convs += [(f"pw_{ci}-{co}_{h}px", ci, co, h, 1, 1, False, "relu6" if co > ci else "relu")
              for ci, co, h in PW_SHAPES[::step]]  # expansions as MobileNetV2's, with ReLU6
    convs += [(f"dw_{c}_{h}px_s{s}", c, c, h, 3, s, True, "relu6")
              for c, h, s in DW_SHAPES[::step]]
    for name, cin, cout, h, k, s, dw, act in convs:
        for reps in (1, 3):
            yield (f"{name}_x{reps}", *conv_graph(batch, cin, cout, h, k, s, dw, reps, act))
    for c, h in RESIDUAL_SHAPES[::step]:
        for inverted in (False, True):
            for reps in (1, 2):
                kind = "inverted" if inverted else "basic"
                yield (f"{kind}_{c}_{h}px_x{reps}", *residual_graph(batch, c, h, inverted, reps))
    for fin, fout in LINEAR_SHAPES[::step]:
        yield (f"linear_{fin}-{fout}", *linear_graph(batch, fin, fout))
    for c, h in POOL_SHAPES[::step]:
        yield (f"pool_{c}_{h}px", *pool_graph(batch, c, h))
    for kind in ("add", "eltwise"):
        for c, h in ELT_SHAPES[::step]:
            for reps in (1, 3):
                yield (f"{kind}_{c}_{h}px_x{reps}", *eltwise_graph(kind, batch, c, h, reps))


def run_benchmarks(batch: int = 1, threads: int = 1, quick: bool = False,
                   rounds: int | None = None) -> list[Sample]:
    """Time every benchmark graph and calibration network in ONNX Runtime (see
    ``design/measure.py``); ``quick`` keeps a third of each."""
    from edgedistill.design.measure import (
        ROUNDS,
        graph_session,
        latency_ms,
        pinned,
        time_interleaved,
    )
    from edgedistill.design.netbench import PER_FAMILY, networks

    single = list(graphs(batch, quick))
    built = [*single, *networks(batch, PER_FAMILY // 3 if quick else PER_FAMILY)]
    with pinned(threads):
        calls = [graph_session(model.SerializeToString(), threads) for _, model, _ in built]
        times = time_interleaved(calls, rounds or ROUNDS)
    return [Sample(name, tuple(ops), latency_ms(t), i >= len(single))
            for i, ((name, _, ops), t) in enumerate(zip(built, times, strict=True))]

"""Random small networks for the latency fit: single ops timed alone miss what a network adds.

In a network, ONNX Runtime inserts layout conversions between convolutions with fewer
input channels than its SIMD block and the blocked ones, fuses residual sums into
convolutions, and streams more weights than the caches hold; single-op chains
(``design/microbench.py``) see little of that, and a fit on them alone under-predicted
deep or narrow networks by 15-30%. So the benchmark set also holds whole networks of
the three block types the zoo's students are made of, drawn at random (seeded):
ResNet basic blocks, pre-activation (WRN) blocks and MobileNetV2 inverted residuals,
with random width multipliers (channels rounded as the zoo rounds them, so odd counts
like 11 and 45 occur as they do in narrow students), stage depths, input sizes and
input channels. Each records the ops the
tracer would record for the same torch network, so its time constrains the same
per-op-type coefficients. They are not the design's candidates: widths are drawn from
a continuum and depths per stage independently.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import onnx

from edgedistill.design.microbench import GraphBuilder, make_model
from edgedistill.design.trace import Op

SEED = 0
PER_FAMILY = 14
INVERTED = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1)]  # t, c, n, s of a small-input MobileNetV2


def _round8(v: float) -> int:
    new = max(8, int(v + 4) // 8 * 8)
    return new + 8 if new < 0.9 * v else new


def _scaled(channels: int, width: float) -> int:
    return max(1, int(channels * width + 0.5))


def basic_net(b: GraphBuilder, cin: int, size: int, width: float, stem: int, base: int,
              blocks: list[int], preact: bool) -> tuple[str, int, int]:
    """Stem and three stages of basic (or pre-activation) blocks with ``base`` x 1, 2, 4
    channels, all scaled by ``width`` as the zoo scales them; (output, channels, size)."""
    x, s = b.conv("input", cin, _scaled(stem, width), size, 3, 1, False,
                  None if preact else "relu")
    cin, fresh = _scaled(stem, width), True
    for stage, n in enumerate(blocks):
        planes = _scaled(base * 2 ** stage, width)
        for j in range(n):
            stride = 2 if stage and not j else 1
            pre = x if not preact or fresh else b.bn_relu(x, cin, s)
            fresh = False
            y, out = b.conv(pre, cin, planes, s, 3, stride, False, "relu")
            y, _ = b.conv(y, planes, planes, out, 3, 1, False, None)
            short = x
            if stride != 1 or cin != planes:
                short, _ = b.conv(pre, cin, planes, s, 1, stride, False, None)
            x, s, cin = b.residual(y, short, planes * out * out, relu=not preact), out, planes
    if preact:
        x = b.bn_relu(x, cin, s)
    return x, cin, s


def inverted_net(b: GraphBuilder, cin: int, size: int, width: float, blocks: list[int],
                 last: int) -> tuple[str, int, int]:
    """MobileNetV2 (ReLU6) at ``width`` with ``blocks[i]`` blocks in stage ``i``."""
    c = _round8(32 * width)
    x, s = b.conv("input", cin, c, size, 3, 1, False, "relu6")
    for (t, base, _, first_stride), n in zip(INVERTED, blocks, strict=True):
        cout = _round8(base * width)
        for i in range(n):
            stride = first_stride if i == 0 else 1
            hidden = c * t
            y = b.conv(x, c, hidden, s, 1, 1, False, "relu6")[0] if t != 1 else x
            y, out = b.conv(y, hidden, hidden, s, 3, stride, True, "relu6")
            y, _ = b.conv(y, hidden, cout, out, 1, 1, False, None)
            x = b.residual(y, x, cout * out * out, relu=False) if stride == 1 and c == cout \
                else y
            c, s = cout, out
    x, _ = b.conv(x, c, last, s, 1, 1, False, "relu6")
    return x, last, s


def networks(batch: int, count: int = PER_FAMILY) -> Iterator[tuple[str, onnx.ModelProto,
                                                                    list[Op]]]:
    """(name, graph, ops) of ``count`` random networks per block type."""
    rng = np.random.default_rng(SEED)
    for i in range(count):
        for kind in ("basic", "preact", "inverted"):
            cin, size = int(rng.choice([1, 3])), int(rng.choice([28, 32]))
            width = float(rng.uniform(0.2, 1.0))
            b = GraphBuilder(batch)
            if kind == "inverted":
                blocks = [int(rng.integers(1, n + 1)) for _, _, n, _ in INVERTED]
                x, c, s = inverted_net(b, cin, size, width, blocks,
                                       int(rng.choice([320, 640, 1280])))
            else:
                preact = kind == "preact"
                stem, base = (32, 64) if not preact and rng.random() < 0.2 else (16, 16)
                base *= int(rng.integers(1, 3)) if preact else 1
                blocks = [int(n) for n in rng.integers(1, 7 if preact else 10, size=3)]
                x, c, s = basic_net(b, cin, size, width, stem, base, blocks, preact)
            classes = int(rng.choice([10, 100]))
            b.head(x, c, s, classes)
            model = make_model(f"{kind}_net", b.nodes, [batch, cin, size, size],
                               [batch, classes], b.inits)
            yield f"net_{kind}_{i}", model, b.ops

"""A per-operator-type latency model fitted on benchmarks of this machine.

A network's latency is predicted as the sum of its ops (``design/trace.py``) plus the
fixed cost of one inference call::

    ms = call_us + sum over ops of (per_op_us + us_per_mflop * MFLOPs + us_per_kb * KB moved)
         + boundary_us_per_kb * KB converted at the graph's input and output

with one ``(per_op_us, us_per_mflop, us_per_kb)`` triple per op class. The classes
follow the kernel a blocked runtime picks, since a kind's cost differs by kernel (ONNX
Runtime's NCHWc layout on x86, measured with 1.32; ``channel_block`` is its SIMD block):

* convolutions are padded to the block (12 channels computed as 16);
* ``conv_narrow`` / ``pwconv_narrow``: a convolution reading fewer channels than a block
  (past the first op) runs a kernel that takes the plain layout, so the blocked output
  of the op before it is converted back first;
* ``conv_nchw`` / ``pwconv_nchw`` / ``dwconv_nchw``: a convolution reading a channel
  count that is not a multiple of ``CHANNEL_ALIGN`` (22 in a 0.35-wide ResNet) is not
  blocked at all and runs a slower im2col kernel, unpadded;
* a graph whose first op is a blocked convolution, or whose last op is any
  convolution, converts its input or output layout (``boundary_us_per_kb``): single-op
  benchmarks pay this, networks that start with a narrow stem and end in a classifier
  do not.

The block is not assumed: the fit tries 1 (no blocking, no classes), 4, 8 and 16 and
keeps the one whose weighted fit error is least (the median error can tie: on this
machine, AVX-512 and so a block of 16, blocks 8 and 16 both fitted to a median 5.6%,
but 8 predicted the candidates' 90th percentile 19% off instead of 12%). Coefficients are fitted by
non-negative least squares on relative error (each benchmark row divided by its
measured time), so small and large graphs count alike; the random calibration networks
(``design/netbench.py``) weigh as much in total as the single-op benchmarks, because
single ops miss what a network adds and networks alone cannot separate the op kinds.
A profile fitted before the classes existed has none of them; its ops then use their
kind's cost, as they were fitted.
"""

from __future__ import annotations

import platform
import statistics
from datetime import date
from typing import TYPE_CHECKING, Sequence

import numpy as np
from pydantic import Field

from edgedistill.config import Strict
from edgedistill.design.trace import Op
from edgedistill.errors import UsageError

if TYPE_CHECKING:
    from edgedistill.design.microbench import Sample

CHANNEL_ALIGN = 4
BLOCKS = (1, 4, 8, 16)
_CONVS = ("conv", "pwconv", "dwconv")


class OpCost(Strict):
    per_op_us: float = Field(0.0, ge=0)
    us_per_mflop: float = Field(0.0, ge=0)
    us_per_kb: float = Field(0.0, ge=0)


class LatencyModel(Strict):
    """Coefficients per op class, and where and how they were measured."""

    call_us: float = Field(0.0, ge=0, description="fixed cost of one inference call")
    ops: dict[str, OpCost]
    channel_block: int = Field(1, gt=0, description="SIMD block convolutions are padded to")
    boundary_us_per_kb: float = Field(0.0, ge=0, description="layout conversion at the "
                                                              "graph's input and output")
    threads: int = Field(1, gt=0)
    batch: int = Field(1, gt=0)
    runtime: str = "onnxruntime"
    measured_on: str = ""
    date: str = ""
    benchmarks: int = Field(0, ge=0)
    fit_median_error: float | None = Field(None, ge=0, description="on the benchmarks")

    def predict_ms(self, ops: Sequence[Op]) -> float:
        total = self.call_us + self.boundary_us_per_kb * boundary_bytes(ops, self.channel_block) \
            / 1e3
        for i, op in enumerate(ops):
            key = op_class(op, i, self.channel_block)
            if key not in self.ops:
                key = op.kind
            cost = self.ops.get(key)
            if cost is None:
                raise UsageError(f"the latency model has no cost for {op.kind!r} ops (it has "
                                 f"{', '.join(self.ops)}); run `edgedistill profile-device` again")
            total += cost.per_op_us + cost.us_per_mflop * op_flops(op, key, self.channel_block) \
                / 1e6 + cost.us_per_kb * op.bytes / 1e3
        return total / 1e3


def op_class(op: Op, index: int, block: int) -> str:
    """The op's kind, or for a convolution the kernel class a blocked runtime runs it with."""
    if block == 1 or op.kind not in _CONVS:
        return op.kind
    if op.kind != "dwconv" and op.cin < block:
        return f"{op.kind}_narrow" if index else op.kind
    return f"{op.kind}_nchw" if op.cin % CHANNEL_ALIGN else op.kind


def op_flops(op: Op, key: str, block: int) -> float:
    """FLOPs as the kernel computes them: padded to the block unless it runs unblocked."""
    return float(op.flops) if key.endswith("_nchw") else padded_flops(op, block)


def padded_flops(op: Op, block: int) -> float:
    """FLOPs with channels rounded up to ``block``; inputs narrower than a block (a stem on
    1-3 channel images) are read as they are, as blocked kernels do."""
    if block == 1 or not op.cout:
        return float(op.flops)

    def up(c: int) -> int:
        return -(-c // block) * block

    cin = op.cin if op.cin < block or op.kind == "dwconv" else up(op.cin)
    return op.flops * cin / op.cin * up(op.cout) / op.cout


def _in_out_elements(op: Op) -> tuple[int, int]:
    weights = op.cout * op.cin // (op.cin if op.kind == "dwconv" else 1) * op.kernel ** 2
    out = op.flops // (2 * (op.cin // (op.cin if op.kind == "dwconv" else 1)) * op.kernel ** 2)
    return op.bytes // 4 - weights - out, out


def boundary_bytes(ops: Sequence[Op], block: int) -> float:
    """fp32 bytes converted between the plain layout of a graph's input and output and a
    blocked first or last convolution."""
    if block == 1 or not ops:
        return 0.0
    first, last = ops[0], ops[-1]
    total = 0
    if first.kind in _CONVS and first.kernel and op_class(first, 0, block) == first.kind \
            and first.cin >= block:
        total += _in_out_elements(first)[0]
    if last.kind in _CONVS and last.kernel:
        total += _in_out_elements(last)[1]
    return 4.0 * total


def _features(ops: Sequence[Op], keys: list[str], block: int) -> np.ndarray:
    row = np.zeros(2 + 3 * len(keys))
    row[0], row[1] = 1.0, boundary_bytes(ops, block) / 1e3
    for i, op in enumerate(ops):
        key = op_class(op, i, block)
        j = 2 + 3 * keys.index(key)
        row[j:j + 3] += (1.0, op_flops(op, key, block) / 1e6, op.bytes / 1e3)
    return row


def _fit_block(samples: Sequence[Sample], block: int):
    from scipy.optimize import nnls

    keys = sorted({op_class(op, i, block) for s in samples for i, op in enumerate(s.ops)})
    a = np.stack([_features(s.ops, keys, block) for s in samples])
    t_us = np.array([s.ms * 1e3 for s in samples])
    networks = sum(s.network for s in samples)
    share = (len(samples) - networks) / networks if networks else 1.0
    w = np.array([share if s.network else 1.0 for s in samples])
    coef, residual = nnls(a * (w / t_us)[:, None], w)
    error = float(statistics.median(np.abs(a @ coef - t_us) / t_us))
    return residual, error, keys, coef


def fit(samples: Sequence[Sample], threads: int, batch: int) -> LatencyModel:
    """Weighted non-negative least squares on relative error, for the best channel block."""
    if not samples:
        raise UsageError("no benchmark samples to fit a latency model on")
    fits = {block: _fit_block(samples, block) for block in BLOCKS}
    block = min(fits, key=lambda b: fits[b][0])  # the weighted error the fit minimizes
    _, error, keys, coef = fits[block]
    ops = {k: OpCost(per_op_us=coef[2 + 3 * i], us_per_mflop=coef[3 + 3 * i],
                     us_per_kb=coef[4 + 3 * i]) for i, k in enumerate(keys)}
    return LatencyModel(
        call_us=coef[0], boundary_us_per_kb=coef[1], ops=ops, channel_block=block,
        threads=threads, batch=batch, runtime=f"onnxruntime {_ort_version()}",
        measured_on=machine_name(), date=date.today().isoformat(), benchmarks=len(samples),
        fit_median_error=error)


def profile_latency(threads: int = 1, batch: int = 1, quick: bool = False,
                    rounds: int | None = None) -> LatencyModel:
    """Run the micro-benchmarks on this machine and fit the model (about 190 graphs; ``quick``
    keeps a third of them, for tests and a first look)."""
    from edgedistill.design.microbench import run_benchmarks

    return fit(run_benchmarks(batch, threads, quick, rounds), threads, batch)


def machine_name() -> str:
    """CPU model and core count, so a profile says which machine it describes."""
    import os

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}"


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__

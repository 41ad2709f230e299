"""A per-operator-type latency model fitted on micro-benchmarks of this machine.

A network's latency is predicted as the sum of its ops (``design/trace.py``) plus the
fixed cost of one inference call::

    ms = call_us + sum over ops of (per_op_us + us_per_mflop * MFLOPs + us_per_kb * KB moved)

with one ``(per_op_us, us_per_mflop, us_per_kb)`` triple per op kind. Convolution
FLOPs are counted with channels padded to the runtime's SIMD block (``channel_block``):
ONNX Runtime on x86 computes 12 channels as 16 in its blocked NCHWc layout, for
example. The block is not assumed: the fit tries 1 (no padding), 4, 8 and 16 and keeps
the one that explains the benchmarks best. This captures what
FLOPs / peak-speed misses: small layers are dominated by per-op overhead, depthwise
and element-wise ops by memory traffic, and convolutions with few channels run far
below peak. Coefficients are fitted by non-negative least squares on relative error
(each benchmark row divided by its measured time), so small and large ops count alike.
"""

from __future__ import annotations

import platform
import statistics
from datetime import date
from typing import TYPE_CHECKING, Sequence

import numpy as np
from pydantic import Field

from edgedistill.config import Strict
from edgedistill.design.trace import KINDS, Op
from edgedistill.errors import UsageError

if TYPE_CHECKING:
    from edgedistill.design.microbench import Sample


class OpCost(Strict):
    per_op_us: float = Field(0.0, ge=0)
    us_per_mflop: float = Field(0.0, ge=0)
    us_per_kb: float = Field(0.0, ge=0)


class LatencyModel(Strict):
    """Coefficients per op kind, and where and how they were measured."""

    call_us: float = Field(0.0, ge=0, description="fixed cost of one inference call")
    ops: dict[str, OpCost]
    channel_block: int = Field(1, gt=0, description="SIMD block convolutions are padded to")
    threads: int = Field(1, gt=0)
    batch: int = Field(1, gt=0)
    runtime: str = "onnxruntime"
    measured_on: str = ""
    date: str = ""
    benchmarks: int = Field(0, ge=0)
    fit_median_error: float | None = Field(None, ge=0, description="on the benchmarks")

    def predict_ms(self, ops: Sequence[Op]) -> float:
        total = self.call_us
        for op in ops:
            cost = self.ops.get(op.kind)
            if cost is None:
                raise UsageError(f"the latency model has no cost for {op.kind!r} ops (it has "
                                 f"{', '.join(self.ops)}); run `edgedistill profile-device` again")
            total += cost.per_op_us + cost.us_per_mflop * padded_flops(op, self.channel_block) \
                / 1e6 + cost.us_per_kb * op.bytes / 1e3
        return total / 1e3


def padded_flops(op: Op, block: int) -> float:
    """FLOPs with channels rounded up to ``block``; inputs narrower than a block (a stem on
    1-3 channel images) are read as they are, as blocked kernels do."""
    if block == 1 or not op.cout:
        return float(op.flops)

    def up(c: int) -> int:
        return -(-c // block) * block

    cin = op.cin if op.cin < block or op.kind == "dwconv" else up(op.cin)
    return op.flops * cin / op.cin * up(op.cout) / op.cout


def _features(ops: Sequence[Op], kinds: list[str], block: int) -> np.ndarray:
    row = np.zeros(1 + 3 * len(kinds))
    row[0] = 1.0
    for op in ops:
        i = 1 + 3 * kinds.index(op.kind)
        row[i:i + 3] += (1.0, padded_flops(op, block) / 1e6, op.bytes / 1e3)
    return row


def _fit_block(samples: Sequence[Sample], kinds: list[str], block: int):
    from scipy.optimize import nnls

    a = np.stack([_features(s.ops, kinds, block) for s in samples])
    t_us = np.array([s.ms * 1e3 for s in samples])
    coef, _ = nnls(a / t_us[:, None], np.ones(len(samples)))
    error = float(statistics.median(np.abs(a @ coef - t_us) / t_us))
    return error, coef


def fit(samples: Sequence[Sample], threads: int, batch: int) -> LatencyModel:
    """Non-negative least squares on relative error, for the channel block that fits best."""
    kinds = [k for k in KINDS if any(op.kind == k for s in samples for op in s.ops)]
    if not kinds:
        raise UsageError("no benchmark samples to fit a latency model on")
    fits = {block: _fit_block(samples, kinds, block) for block in (1, 4, 8, 16)}
    block = min(fits, key=lambda b: fits[b][0])
    error, coef = fits[block]
    ops = {k: OpCost(per_op_us=coef[1 + 3 * i], us_per_mflop=coef[2 + 3 * i],
                     us_per_kb=coef[3 + 3 * i]) for i, k in enumerate(kinds)}
    return LatencyModel(
        call_us=coef[0], ops=ops, channel_block=block, threads=threads, batch=batch,
        runtime=f"onnxruntime {_ort_version()}", measured_on=machine_name(),
        date=date.today().isoformat(), benchmarks=len(samples), fit_median_error=error)


def profile_latency(threads: int = 1, batch: int = 1, quick: bool = False,
                    rounds: int = 4) -> LatencyModel:
    """Run the micro-benchmarks on this machine and fit the model (about 150 graphs; ``quick``
    keeps a third of the shapes, for tests and a first look)."""
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

"""Latency measured in ONNX Runtime on this machine, for benchmark graphs and candidates.

Both go through ``export.onnx.session`` (full graph optimizations, the given intra-op
threads) and the same timer, so a prediction fitted on micro-benchmarks is checked
against the same kind of number. The timer reports the 10th percentile of many calls:
on a shared machine other processes preempt some calls and inflate the median (we saw
medians 3x the 10th percentile), while the low percentile is what the model takes when
it has the core to itself, which is the situation on a dedicated edge device.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from torch import nn

from edgedistill.export.onnx import call_times_ms, export_onnx, session

PERCENTILE = 10
ROUNDS = 5


def time_call(sess, input_shape: tuple[int, ...], repeats: int = 40, warmup: int = 5) -> float:
    """The ``PERCENTILE``-th percentile of ``repeats`` timed calls, in ms."""
    return float(np.percentile(call_times_ms(sess, input_shape, warmup, repeats), PERCENTILE))


def time_interleaved(calls: list[tuple[object, tuple[int, ...]]], rounds: int = ROUNDS,
                     repeats: int = 40) -> list[float]:
    """Time each (session, input shape) ``rounds`` times, round-robin, and keep each one's
    fastest round: a burst of load on a shared machine then hits one round of every
    model instead of every round of one model."""
    best = [float("inf")] * len(calls)
    for _ in range(rounds):
        for i, (sess, shape) in enumerate(calls):
            best[i] = min(best[i], time_call(sess, shape, repeats))
    return best


def graph_session(model_bytes: bytes, threads: int) -> tuple[object, tuple[int, ...]]:
    """An ONNX Runtime session for a serialized graph, and its (static) input shape."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.onnx"
        path.write_bytes(model_bytes)
        sess = session(path, threads)
    dims = onnx.load_from_string(model_bytes).graph.input[0].type.tensor_type.shape.dim
    return sess, tuple(d.dim_value for d in dims)


def model_session(model: nn.Module, input_shape: tuple[int, ...], threads: int, path: Path):
    """Export ``model`` to ``path``; the session and the shape (N, C, H, W) to time it at."""
    export_onnx(model, input_shape, path)
    return session(path, threads), tuple(input_shape)


def pick_sample(candidates: list, chosen, n: int) -> list:
    """The chosen student plus ``n - 1`` candidates spread evenly over predicted latency."""
    runnable = sorted((c for c in candidates if c.latency_ms is not None),
                      key=lambda c: c.latency_ms)
    others = [c for c in runnable if c is not chosen]
    picked = [chosen] if chosen is not None and chosen.latency_ms is not None else []
    k = min(n - len(picked), len(others))
    if k > 0:
        step = (len(others) - 1) / max(k - 1, 1)
        picked += [others[round(i * step)] for i in range(k)]
    return picked


def measure_candidates(sample: list, input_shape: tuple[int, ...], threads: int, folder: Path,
                       rounds: int = ROUNDS) -> None:
    """Export each sampled candidate to ``folder`` and set its ``measured_ms``."""
    from edgedistill.models import create_model

    folder.mkdir(parents=True, exist_ok=True)
    calls = [model_session(create_model(**c.spec), input_shape, threads,
                           folder / f"{c.name}.onnx") for c in sample]
    for c, ms in zip(sample, time_interleaved(calls, rounds), strict=True):
        c.measured_ms = ms

"""Latency measured in ONNX Runtime on this machine, for benchmark graphs and candidates.

Both go through ``export.onnx.session`` (full graph optimizations, the given intra-op
threads) and the same timer, so a prediction fitted on micro-benchmarks is checked
against the same kind of number. The timer is built for a shared machine, where other
processes preempt calls, evict caches and take the core for seconds at a time (on the
2-core development machine under a training job, whole measurements ran 30% slower
than the same ones minutes later):

* the process is pinned to ``threads`` cores while it measures (``pinned``), so calls
  are not moved between cores and caches mid-measurement;
* sessions are timed round-robin (``time_interleaved``), a short burst of calls each
  time, so a slow period hits one round of every model rather than every round of one;
* each round keeps its fastest call (preemption and cache misses only ever add time),
  and a model's time is the lower quartile of its rounds: what the model takes when
  it has the core to itself, as on a dedicated edge device, without hinging on one
  lucky round.

Two interleaved passes of 12 such rounds over 72 candidates disagreed by a median 0.6%
(90th percentile 2.7%) with the training job on the other core; the previous timer
(10th percentile of 40 calls, fastest of 5 rounds) disagreed by 2.3% (max 30%) on the
same machine, and two of its runs of the same candidates minutes apart by 31%.
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from torch import nn

from edgedistill.export.onnx import export_onnx, run_session, session

ROUNDS = 12
REPEATS = 10
QUANTILE = 25


@contextmanager
def pinned(threads: int):
    """Restrict this process to ``threads`` of the cores it may use (the last ones, away
    from core 0's interrupts) for the duration; a no-op where affinity is not supported."""
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, allowed[-threads:])
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def time_interleaved(calls: list[tuple[object, tuple[int, ...]]], rounds: int = ROUNDS,
                     repeats: int = REPEATS) -> list[list[float]]:
    """Each (session, input shape)'s fastest of ``repeats`` calls, in ms, in each of
    ``rounds`` round-robin rounds: ``out[i][r]``."""
    inputs = [np.random.default_rng(0).standard_normal(shape).astype(np.float32)
              for _, shape in calls]
    out = [[] for _ in calls]
    for _ in range(rounds):
        for (sess, _), x, times in zip(calls, inputs, out, strict=True):
            run_session(sess, x)
            best = float("inf")
            for _ in range(repeats):
                tic = time.perf_counter()
                run_session(sess, x)
                best = min(best, time.perf_counter() - tic)
            times.append(best * 1e3)
    return out


def latency_ms(round_times: list[float]) -> float:
    """A model's time from its per-round fastest calls: their lower quartile."""
    return float(np.percentile(round_times, QUANTILE))


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


def candidate_sessions(sample: list, input_shape: tuple[int, ...], threads: int,
                       folder: Path) -> list[tuple[object, tuple[int, ...]]]:
    """Export each sampled candidate to ``folder``; its session and input shape."""
    from edgedistill.models import create_model

    folder.mkdir(parents=True, exist_ok=True)
    return [model_session(create_model(**c.spec), input_shape, threads,
                          folder / f"{c.name}.onnx") for c in sample]


def measure_candidates(sample: list, input_shape: tuple[int, ...], threads: int, folder: Path,
                       rounds: int = ROUNDS) -> None:
    """Export each sampled candidate to ``folder`` and set its ``measured_ms``."""
    with pinned(threads):
        calls = candidate_sessions(sample, input_shape, threads, folder)
        for c, times in zip(sample, time_interleaved(calls, rounds), strict=True):
            c.measured_ms = latency_ms(times)

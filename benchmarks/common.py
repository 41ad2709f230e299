"""Helpers shared by the benchmark scripts: timing loops and RESULTS.md output."""

from __future__ import annotations

import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import torch


def timed_steps(step, warmup: int, steps: int) -> float:
    """Seconds for ``steps`` calls of ``step()`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    tic = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - tic


def header(command: str) -> str:
    return (f"Command: `{command}`  \nDate: {datetime.date.today().isoformat()}  \n"
            f"Machine: {platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}\n")


# KD as both KD benchmarks run it: Hinton KD at T=4 half and half with cross-entropy
KD_LOSSES = [{"name": "ce", "weight": 0.5},
             {"name": "kd", "weight": 0.5, "params": {"temperature": 4.0}}]


def read_run(run_dir: Path) -> dict:
    """A finished run's figures: median training images/s over epochs, final test
    accuracy, and the per-run totals of teacher wait and cache build seconds."""
    recs = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return {"images_per_s": statistics.median(r["images_per_s"] for r in recs),
            "test_acc": recs[-1]["test_acc"],
            "teacher_wait_s": sum(r.get("teacher_wait_s", 0.0) for r in recs),
            "cache_build_s": sum(r.get("cache_build_s", 0.0) for r in recs)}

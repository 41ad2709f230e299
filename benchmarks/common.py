"""Helpers shared by the benchmark scripts: timing loops and RESULTS.md output."""

from __future__ import annotations

import datetime
import platform
import time

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

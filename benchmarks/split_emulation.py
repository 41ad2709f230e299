"""Why the split client emulates a slow device in CPU time and waits with ``precise_sleep``:
how late ``time.sleep`` returns, and how far a model step's wall time strays from its CPU
time when other processes share the cores.

    .venv/bin/python -m benchmarks.split_emulation --onnx RUN/export/teacher.onnx [--spinners 2]

A device k times slower than this host is emulated by making each step last k times its
measured time; any wall time a co-tenant takes from a step would come back k-fold.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time

import numpy as np

from benchmarks.common import header
from edgedistill.report.markdown import markdown_table
from edgedistill.split.shaper import precise_sleep


def spin() -> None:
    while True:
        pass


def lateness_ms(sleep, n: int = 32) -> list[float]:
    late = []
    for ms in [5, 10, 20, 30] * (n // 4):
        tic = time.perf_counter()
        sleep(ms / 1e3)
        late.append((time.perf_counter() - tic) * 1e3 - ms)
    return late


def stretch(step, n: int = 40) -> list[float]:
    """wall / CPU time of ``step()``, each call after 10 ms idle, as requests arrive."""
    for _ in range(3):
        step()
    ratios = []
    for _ in range(n):
        time.sleep(0.01)
        tic, cpu = time.perf_counter(), time.thread_time()
        step()
        ratios.append((time.perf_counter() - tic) / max(time.thread_time() - cpu, 1e-9))
    return ratios


def main() -> None:
    from edgedistill.export.onnx import run_session, session

    parser = argparse.ArgumentParser()
    parser.add_argument("--onnx", required=True, help="a batch-1 model, e.g. a split run's "
                                                      "export/teacher.onnx")
    parser.add_argument("--spinners", type=int, default=2, help="busy co-tenant processes")
    args = parser.parse_args()
    sess = session(args.onnx, threads=1)
    shape = [d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    rows = []
    for label, spinners in (("quiet", 0), (f"{args.spinners} busy processes", args.spinners)):
        procs = [mp.Process(target=spin, daemon=True) for _ in range(spinners)]
        for p in procs:
            p.start()
        time.sleep(1)
        try:
            late = {"time.sleep": lateness_ms(time.sleep), "precise_sleep":
                    lateness_ms(precise_sleep)}
            ratios = stretch(lambda: run_session(sess, x))
        finally:
            for p in procs:
                p.terminate()
        rows.append({"host": label,
                     "time.sleep late ms (median, max)":
                     f"{statistics.median(late['time.sleep']):.3f}, {max(late['time.sleep']):.3f}",
                     "precise_sleep late ms (median, max)":
                     f"{statistics.median(late['precise_sleep']):.3f}, "
                     f"{max(late['precise_sleep']):.3f}",
                     "step wall/CPU median": f"{statistics.median(ratios):.2f}",
                     "steps over 1.3x": f"{sum(r > 1.3 for r in ratios)}/{len(ratios)}",
                     "step wall/CPU max": f"{max(ratios):.2f}"})
    print(header(f"python -m benchmarks.split_emulation --onnx {args.onnx} "
                 f"--spinners {args.spinners}"))
    print(markdown_table(rows))


if __name__ == "__main__":
    main()

"""How long a design query takes, and proof that counting candidates from their specs
chose what building and tracing each one chose.

    .venv/bin/python -m benchmarks.design_query [--runs 3] [--check]

Runs the issue's query (``edgedistill design --teacher zoo:resnet56-fashion_mnist
--storage 300KB --max-time 5ms --speed 2GFLOPS --measure 0``) ``--runs`` times as a fresh
process, pinned to one core with ``taskset`` where it exists, and prints wall and CPU
seconds (the CPU time is what the query costs; the wall time also holds the waits for a
co-tenant). ``--check`` then builds every candidate on the CPU and traces it, as the
search did before ``design/analytic.py``, and compares the numbers the choice rests on
(the FLOPs profile's latency is FLOPs / speed, so equal FLOPs mean equal latency).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import header
from edgedistill.report.markdown import markdown_table

TEACHER = "zoo:resnet56-fashion_mnist"
QUERY = ["--teacher", TEACHER, "--storage", "300KB", "--max-time", "5ms", "--speed", "2GFLOPS",
         "--measure", "0"]


def run_query(out: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one query in a fresh process."""
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    cmd = [*pin, sys.executable, "-m", "edgedistill.design.cli", "design", *QUERY,
           "--out", str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    wall = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def check_by_tracing(design: dict) -> tuple[int, float]:
    """Build every candidate on the CPU and trace it, as the search did before the analytic
    counts; (candidates whose numbers differ, seconds)."""
    import torch

    from edgedistill.design.trace import trace
    from edgedistill.models import count_params, create_model

    torch.set_num_threads(1)
    tic, differ = time.perf_counter(), 0
    for c in design["candidates"]:
        model = create_model(**c["spec"])
        t = trace(model, (1, 1, 28, 28))
        numbers = (count_params(model), sum(op.flops for op in t.ops),
                   4 * t.peak_activation_elements)
        differ += numbers != (c["params"], c["flops"], c["activation_bytes"])
    return differ, time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    print(header("python -m benchmarks.design_query" + (" --check" if args.check else "")))
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for i in range(args.runs):
            wall, cpu = run_query(Path(tmp) / "q")
            rows.append({"run": i + 1, "wall s": round(wall, 2), "CPU s": round(cpu, 2)})
        design = json.loads((Path(tmp) / "q" / "design.json").read_text())
    print(markdown_table(rows))
    print(f"{len(design['candidates'])} candidates, chosen {design['chosen']['name']}; median "
          f"wall {statistics.median(r['wall s'] for r in rows):.2f} s, CPU "
          f"{statistics.median(r['CPU s'] for r in rows):.2f} s")
    if args.check:
        differ, seconds = check_by_tracing(design)
        print(f"built and traced on the CPU ({seconds:.1f} s): {differ} of "
              f"{len(design['candidates'])} candidates differ in parameters, FLOPs or "
              "activations")
        if differ:
            raise SystemExit(1)


if __name__ == "__main__":
    main()

"""Accuracy of pool distillation against online KD over several seeds: is the difference
a bias or noise? One ONNX Runtime int8 replica (fp16 wire) against the online teacher,
the elastic benchmark's schedule (resnet56 -> resnet8, 2 epochs on 6,400 images).

    .venv/bin/python -m benchmarks.elastic_seeds [--seeds 0,1,2,3] [--out /tmp/seeds]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import ray
import torch

from benchmarks.common import header, read_run
from benchmarks.elastic_throughput import kd_config, teacher_source
from edgedistill.distill.run import run_distill


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--teacher", default=None)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--limit-train", type=int, default=6400)
    ap.add_argument("--limit-test", type=int, default=2000)
    ap.add_argument("--out", default="/tmp/elastic_seeds")
    args = ap.parse_args()
    args.batch, args.in_flight = 128, 4
    torch.set_num_threads(1)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    teacher = teacher_source(args.teacher)
    replicas = [{"backend": "onnx-int8", "num_cpus": 1}]
    rows = []
    for seed in map(int, args.seeds.split(",")):
        acc = {}
        for mode, reps in (("online", None), ("pool", replicas)):
            cfg = kd_config(args, teacher, mode, reps).model_copy(update={"seed": seed})
            run_dir = Path(args.out) / f"{mode}_s{seed}"
            if not (run_dir / "summary.json").exists():  # finished runs are reused
                run_distill(cfg, run_dir, progress=False)
            acc[mode] = read_run(run_dir)["test_acc"]
        rows.append((seed, acc["online"], acc["pool"], 100 * (acc["pool"] - acc["online"])))
    ray.shutdown()
    diffs = [r[3] for r in rows]
    print(header("python -m benchmarks.elastic_seeds " + " ".join(sys.argv[1:])))
    print(f"Teacher {teacher} -> resnet8; {args.epochs} epochs on {args.limit_train} images, "
          f"test on {args.limit_test}; pool: 1 onnx-int8 replica, fp16 wire.\n")
    print("| seed | online KD acc | pool int8 acc | pool - online (points) |")
    print("|---|---|---|---|")
    for seed, online, pool, diff in rows:
        print(f"| {seed} | {online:.4f} | {pool:.4f} | {diff:+.2f} |")
    sd = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
    print(f"\nmean difference {statistics.mean(diffs):+.2f} points, standard deviation "
          f"{sd:.2f}, standard error of the mean {sd / len(diffs) ** 0.5:.2f}")


if __name__ == "__main__":
    main()

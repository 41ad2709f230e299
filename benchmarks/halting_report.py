"""Early halting on a designed student: design for a device, then distil the chosen student
to the full schedule and with halting (same seed), and print the comparison.

    .venv/bin/python -m benchmarks.halting_report [--epochs 10] [--limit-train 5000] \
        [--limit-test 2000] [--storage 150kB] [--anneal 0] [--out runs/bench_halting]

Fashion-MNIST subset, online teacher, hint+kd, the default halting rules of
``design --train`` (plateau patience 3 / min_delta 0.002, teacher_gap epsilon 0.005).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks.common import header
from edgedistill.design.halting_report import run_halting_report
from edgedistill.design.profiles import load_profile, with_overrides
from edgedistill.design.run import run_design
from edgedistill.design.train import design_configs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--teacher", default="zoo:resnet20-fashion_mnist")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--profile", default="rpi4")
    parser.add_argument("--storage", default="150kB")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit-train", type=int, default=5000)
    parser.add_argument("--limit-test", type=int, default=2000)
    parser.add_argument("--anneal", type=int, default=0,
                        help="halting_anneal_epochs: anneal the learning rate over K epochs "
                             "after a halt instead of stopping at once")
    parser.add_argument("--out", default="runs/bench_halting")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tic = time.perf_counter()
    out = Path(args.out)
    profile = with_overrides(load_profile(args.profile), storage_bytes=args.storage, threads=1)
    design = run_design(args.teacher, profile, out, dataset=args.dataset, measure=1)
    kd, _ = design_configs(design, args.dataset, {}, [
        f"train.epochs={args.epochs}", f"data.limit_train={args.limit_train}",
        f"data.limit_test={args.limit_test}", "train.threads=1", "train.progress=false",
        f"halting_anneal_epochs={args.anneal}"])
    print(header(f"python -m benchmarks.halting_report --teacher {args.teacher} --epochs "
                 f"{args.epochs} --limit-train {args.limit_train} --limit-test "
                 f"{args.limit_test} --storage {args.storage} --anneal {args.anneal}"))
    print(f"designed student: {design.chosen.name} ({design.chosen.params:,} params, "
          f"{design.chosen.flops / 1e6:.1f} MFLOPs) for {profile.name} "
          f"({'; '.join(profile.budgets())})\n")
    run_halting_report(kd, out / "halting", resume=True, progress=False)
    print((out / "halting" / "HALTING.md").read_text())
    print(f"total {time.perf_counter() - tic:.0f} s")


if __name__ == "__main__":
    main()

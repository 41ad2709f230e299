"""Early halting on a designed student: design for a device, then distil the chosen student
with halting and to the full schedule (same seed), and print the comparison.

    .venv/bin/python -m benchmarks.halting_report [--teacher zoo:resnet56-fashion_mnist] \
        [--epochs 30] [--limit-train N] [--limit-test N] [--val-split 5000] [--storage 150kB] \
        [--anneal 3,5] [--teacher-mode cache] [--threads 2] [--out runs/bench_halting]

Fashion-MNIST, hint+kd, the default halting rules of ``design --train`` (plateau patience
3 / min_delta 0.002, teacher_gap epsilon 0.005), read on a validation split held out of the
training set. The full run branches from the halted run's state at the halt (the two are
one trajectory up to there), and each extra ``--anneal`` length branches from the same halt.
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
    parser.add_argument("--teacher", default="zoo:resnet56-fashion_mnist")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--profile", default="rpi4")
    parser.add_argument("--storage", default="150kB")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--limit-train", type=int, default=None, help="default: all")
    parser.add_argument("--limit-test", type=int, default=None, help="default: all")
    parser.add_argument("--val-split", type=int, default=5000,
                        help="training images held out for the halting rules (0: use test)")
    parser.add_argument("--anneal", default="0",
                        help="halting_anneal_epochs; a comma list compares several after the "
                             "same halt")
    parser.add_argument("--teacher-mode", default="cache", choices=["online", "cache"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/bench_halting")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    anneals = [int(k) for k in args.anneal.split(",")]
    tic = time.perf_counter()
    out = Path(args.out)
    profile = with_overrides(load_profile(args.profile), storage_bytes=args.storage, threads=1)
    design = run_design(args.teacher, profile, out, dataset=args.dataset, measure=1)
    overrides = [f"train.epochs={args.epochs}", f"train.threads={args.threads}",
                 "train.progress=false", f"teacher.mode={args.teacher_mode}",
                 f"halting_anneal_epochs={anneals[0]}"]
    for key, value in (("limit_train", args.limit_train), ("limit_test", args.limit_test),
                       ("val_split", args.val_split or None)):
        if value:
            overrides.append(f"data.{key}={value}")
    kd, _ = design_configs(design, args.dataset, {}, overrides)
    print(header(f"python -m benchmarks.halting_report --teacher {args.teacher} --epochs "
                 f"{args.epochs} --limit-train {args.limit_train} --limit-test "
                 f"{args.limit_test} --val-split {args.val_split} --storage {args.storage} "
                 f"--anneal {args.anneal} --teacher-mode {args.teacher_mode} "
                 f"--threads {args.threads}"), flush=True)
    print(f"designed student: {design.chosen.name} ({design.chosen.params:,} params, "
          f"{design.chosen.flops / 1e6:.1f} MFLOPs) for {profile.name} "
          f"({'; '.join(profile.budgets())})\n", flush=True)
    run_halting_report(kd, out / "halting", resume=True, progress=True, anneals=anneals)
    print((out / "halting" / "HALTING.md").read_text())
    print(f"total {time.perf_counter() - tic:.0f} s")


if __name__ == "__main__":
    main()

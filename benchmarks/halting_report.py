"""Early halting on a designed student: design for a device, then distil the chosen student
with halting and to the full schedule (same seed), and print the comparison.

    .venv/bin/python -m benchmarks.halting_report [--teacher zoo:resnet56-fashion_mnist] \
        [--epochs 30] [--limit-train N] [--limit-test N] [--val-split 5000] [--storage 150kB] \
        [--anneal 3,5] [--teacher-mode cache] [--threads 2] [--out runs/bench_halting] \
        [--replay-rules "[{kind: plateau, statistic: mean}]" --replay-anneal 3,5]

Fashion-MNIST, hint+kd, the default halting rules of ``design --train`` (plateau patience
3 / min_delta 0.002, teacher_gap epsilon 0.005), read on a validation split held out of the
training set. The full run branches from the halted run's state at the halt (the two are
one trajectory up to there), and each extra ``--anneal`` length branches from the same halt.
``--replay-rules`` tries another rule set on the finished full run (its epoch checkpoints
are kept): the rules fire where the full run's records say, and only the anneal is
trained (``replay_halting``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from benchmarks.common import header
from edgedistill.design.halting_report import (
    forward_flops,
    replay_halting,
    run_halting_report,
    run_row,
    variant_label,
)
from edgedistill.design.profiles import load_profile, with_overrides
from edgedistill.design.run import run_design
from edgedistill.design.train import design_configs
from edgedistill.report.markdown import markdown_table
from edgedistill.train.halting import parse_rules


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--teacher", default="zoo:resnet56-fashion_mnist")
    parser.add_argument("--allow-unfinished", action="store_true",
                        help="accept a teacher trained short of its schedule (the shipped "
                             "resnet56: 5 of 30 epochs)")
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
    parser.add_argument("--replay-rules", default=None,
                        help="YAML list of halting rules to replay on the full run")
    parser.add_argument("--replay-anneal", default="3", help="anneal lengths for the replay")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    anneals = [int(k) for k in args.anneal.split(",")]
    tic = time.perf_counter()
    out = Path(args.out)
    profile = with_overrides(load_profile(args.profile), storage_bytes=args.storage, threads=1)
    design = run_design(args.teacher, profile, out, dataset=args.dataset, measure=1)
    overrides = [f"train.epochs={args.epochs}", f"train.threads={args.threads}",
                 "train.progress=false", f"teacher.mode={args.teacher_mode}",
                 f"teacher.allow_unfinished={args.allow_unfinished}",
                 f"halting_anneal_epochs={anneals[0]}",
                 f"train.keep_epoch_checkpoints={bool(args.replay_rules)}"]
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
    result = run_halting_report(kd, out / "halting", resume=True, progress=True,
                                anneals=anneals)
    print((out / "halting" / "HALTING.md").read_text())
    if args.replay_rules:
        replay(kd, out / "halting", yaml.safe_load(args.replay_rules),
               [int(k) for k in args.replay_anneal.split(",")], result["runs"][0])
    print(f"total {time.perf_counter() - tic:.0f} s")


def replay(kd, out: Path, raw_rules: list, anneals: list[int], full_row: dict) -> None:
    rules = parse_rules(raw_rules)
    print(f"## Replayed on the full run: {raw_rules}\n")
    rows = [{**full_row, "saved_flops": 0.0, "delta_points": 0.0}]
    for k in anneals:
        summary = replay_halting(out / "full", kd, rules, k, out / f"replay-anneal{k}")
        if summary is None:
            print("no rule fires within the full run\n")
            return
        row = run_row(variant_label("replayed", k), summary,
                      forward_flops(kd, summary), kd)
        row["saved_flops"] = 1 - row["train_TFLOPs"] / full_row["train_TFLOPs"]
        row["delta_points"] = 100 * (row["final_test_acc"] - full_row["final_test_acc"])
        rows.append(row)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()

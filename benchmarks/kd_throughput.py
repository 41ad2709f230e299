"""KD images/s and accuracy, one run: student alone (the limit), our online KD, our
cached-teacher KD, and torchdistill's KD (in its own venv, `make bench-venv`).

Our numbers come from the real product path (``api.train`` / ``run_distill``): the
training-loop images/s each run records in metrics.jsonl (evaluation and the one-off
cache build excluded; the build time is reported on its own). Same teacher, student,
batch size, thread count and schedule for all.

    .venv/bin/python -m benchmarks.kd_throughput [--epochs 3] [--limit-train 10000] \
        [--threads 2] [--teacher resnet56-fashion_mnist]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.common import KD_LOSSES, header, read_run
from edgedistill import api, pretrained
from edgedistill.config import DistillExperiment, TrainExperiment
from edgedistill.distill.run import run_distill

ROOT = Path(__file__).resolve().parents[1]
TD_PYTHON = ROOT / ".venv-torchdistill" / "bin" / "python"


def default_teacher() -> str:
    shipped = pretrained.manifest()
    return next(n for n in ("resnet56-fashion_mnist", "resnet20-fashion_mnist") if n in shipped)


def common(args) -> dict:
    return {"seed": 0,
            "data": {"dataset": "fashion_mnist", "limit_train": args.limit_train,
                     "batch_size": args.batch},
            "train": {"epochs": args.epochs, "threads": args.threads, "progress": False,
                      "optimizer": {"name": "sgd", "lr": 0.05}}}


def kd_config(args, mode: str) -> DistillExperiment:
    # speed, not accuracy: the shipped resnet56 (5 of its 30 planned epochs) serves
    teacher = {"source": f"zoo:{args.teacher}", "mode": mode, "allow_unfinished": True,
               "cache": {"num_draws": args.draws, "dir": args.cache_dir,
                         "precision": args.cache_precision}}
    return DistillExperiment.model_validate({
        **common(args), "name": f"kd_{mode}", "teacher": teacher,
        "student": {"name": args.student},
        "losses": KD_LOSSES})



def torchdistill(args) -> dict:
    if not TD_PYTHON.exists():
        return {"images_per_s": float("nan"), "note": "run `make bench-venv` first"}
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run([str(TD_PYTHON), str(ROOT / "benchmarks" / "torchdistill_kd.py"),
                          "--teacher", str(pretrained.weights_path(args.teacher)),
                          "--student", args.student, "--steps", str(args.td_steps),
                          "--batch", str(args.batch), "--threads", str(args.threads)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default=default_teacher(),
                    help="zoo name (default: resnet56-fashion_mnist, as the issue asks, "
                         "when shipped)")
    ap.add_argument("--student", default="resnet8")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--limit-train", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--td-steps", type=int, default=30)
    ap.add_argument("--cache-precision", default="fp16", choices=["fp16", "fp32"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out or tempfile.mkdtemp(prefix="kd_bench_"))
    args.cache_dir = str(out / "cache")
    student_cfg = TrainExperiment.model_validate(
        {**common(args), "name": "student", "model": {"name": args.student}})
    api.train(student_cfg, out / "student", progress=False)
    rows = {"student alone (limit)": read_run(out / "student")}
    run_distill(kd_config(args, "online"), out / "online", progress=False)
    rows["edgedistill online KD"] = read_run(out / "online")
    run_distill(kd_config(args, "cache"), out / "cache_run", progress=False)
    rows["edgedistill cached-teacher KD"] = read_run(out / "cache_run")
    rows["torchdistill KD (DataLoader+PIL)"] = torchdistill(args)
    alone = rows["student alone (limit)"]["images_per_s"]
    td = rows["torchdistill KD (DataLoader+PIL)"]["images_per_s"]
    print(header("python -m benchmarks.kd_throughput " + " ".join(sys.argv[1:])))
    print(f"Teacher zoo:{args.teacher} -> {args.student}; {args.epochs} epochs on "
          f"{args.limit_train} Fashion-MNIST images; batch {args.batch}; KD T=4, "
          f"ce 0.5 + kd 0.5; cache: {args.draws} augmentation draws per sample, "
          f"{args.cache_precision}.\n")
    print("| setup | images/s | vs student alone | vs torchdistill | test acc |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        acc = f"{r['test_acc']:.4f}" if "test_acc" in r else "n/a (throughput only)"
        print(f"| {name} | {r['images_per_s']:.0f} | {r['images_per_s'] / alone:.2f}x | "
              f"{r['images_per_s'] / td:.2f}x | {acc} |")
    build = rows["edgedistill cached-teacher KD"]["cache_build_s"]
    print(f"\nCache build (once, reused by later runs and students): {build:.1f} s")


if __name__ == "__main__":
    main()

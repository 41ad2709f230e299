"""Data-parallel KD images/s: 1 and N ranks with each teacher source (online, cache, pool).

Each cell is one real ``edgedistill distill CONFIG --nproc N`` (torchrun; gloo on CPU,
NCCL on CUDA). images/s is the training loop's own figure from metrics.jsonl for the
last epoch (global images over rank 0's loop seconds; evaluation, start-up, the cache
build of epoch 1 and the pool's start excluded); ``wall s`` is the whole command,
start-up included.

    .venv/bin/python -m benchmarks.ddp_scaling [--nprocs 1,2] [--sources online,cache,pool] \
        [--limit-train 2048] [--epochs 2] [--device cpu] [--threads 1]

On CUDA (``--device cuda``) each rank takes one GPU, the student trains in bf16 autocast
and the pool's replica runs on a GPU in bf16 (``--replica-gpus``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.common import KD_LOSSES, header

ROOT = Path(__file__).resolve().parents[1]


def config(args, source: str, tmp: Path) -> dict:
    replica = {"backend": "torch", "num_cpus": 1}
    if args.replica_gpus:
        replica["num_gpus"] = args.replica_gpus
    return {
        "name": f"ddp-{source}", "seed": 0,
        "data": {"dataset": "synthetic" if args.synthetic else args.dataset,
                 "limit_train": args.limit_train, "limit_test": 1000,
                 "batch_size": args.batch_size,
                 "options": {"num_train": args.limit_train, "num_test": 1000, "image_size": 28,
                             "channels": 1} if args.synthetic else {}},
        "teacher": {"source": args.teacher, "mode": source, "allow_unfinished": True,
                    "cache": {"dir": str(tmp / "teacher-cache")},
                    "pool": {"replicas": [replica], "max_in_flight": 4}},
        "student": {"name": args.student},
        "losses": KD_LOSSES,
        "train": {"epochs": args.epochs, "threads": args.threads, "progress": False,
                  "device": args.device, "optimizer": {"name": "sgd", "lr": 0.05}},
    }


def run_cell(args, source: str, nproc: int, tmp: Path) -> dict:
    path = tmp / f"{source}-{nproc}.yaml"
    path.write_text(yaml.safe_dump(config(args, source, tmp)))
    out = tmp / f"{source}-{nproc}"
    cmd = [sys.executable, "-m", "edgedistill.cli", "distill", str(path), "--out", str(out),
           "--nproc", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    tic = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=args.timeout)
    wall = time.perf_counter() - tic
    if res.returncode != 0:
        raise SystemExit(f"{source} x {nproc} rank(s) failed:\n{res.stderr[-2000:]}")
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    summary = json.loads((out / "summary.json").read_text())
    return {"source": source, "ranks": nproc, "images_per_s": last["images_per_s"],
            "test_acc": last["test_acc"], "wall_s": wall, "backend": summary["backend"],
            "devices": ",".join(summary["devices"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nprocs", default="1,2")
    p.add_argument("--sources", default="online,cache,pool")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--synthetic", action="store_true",
                   help="generated 28x28 grey images instead (where Fashion-MNIST is missing)")
    p.add_argument("--teacher", default="zoo:resnet56-fashion_mnist")
    p.add_argument("--student", default="resnet8")
    p.add_argument("--limit-train", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--replica-gpus", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=1200)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for source in args.sources.split(","):
            for nproc in (int(n) for n in args.nprocs.split(",")):
                rows.append(run_cell(args, source, nproc, Path(tmp)))
                r = rows[-1]
                print(f"{source} x {nproc}: {r['images_per_s']:.0f} img/s "
                      f"(wall {r['wall_s']:.0f}s)", flush=True)
    print(header("python -m benchmarks.ddp_scaling " + " ".join(sys.argv[1:])))
    print("| teacher source | ranks | backend | devices | images/s | vs 1 rank | test acc | "
          "wall s |\n|---|---|---|---|---|---|---|---|")
    base = {r["source"]: r["images_per_s"] for r in rows if r["ranks"] == 1}
    for r in rows:
        ratio = f"{r['images_per_s'] / base[r['source']]:.2f}x" if r["source"] in base else "-"
        print(f"| {r['source']} | {r['ranks']} | {r['backend'] or '-'} | {r['devices']} | "
              f"{r['images_per_s']:.0f} | {ratio} | {r['test_acc']:.4f} | {r['wall_s']:.0f} |")


if __name__ == "__main__":
    main()

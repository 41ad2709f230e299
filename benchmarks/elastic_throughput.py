"""Elastic distillation throughput and fault figures on Fashion-MNIST, one run.

Rows: the student trained alone (the limit), online KD (teacher forward inside every
student step), and the Ray teacher pool with 1 and 2 replicas, PyTorch and ONNX Runtime
int8 backends, all through the product path (``api.train`` / ``run_distill``) with the
same teacher, student, batch size, student threads and schedule; images/s are the
training-loop figures each run records in metrics.jsonl (evaluation and replica start-up
excluded). Then the failure figures: a pool of replicas with one killed (``ray.kill``)
every ``--kill-every`` seconds while a real student trains, then one epoch without
kills; kill-every should exceed the time a replacement takes to start, or the pool runs
dry.

Ray runs embedded with one CPU per core, so on a 2-core machine the student and two
replicas share 2 cores: the table shows what this machine can do, not what the design
can do on a machine with free cores.

    .venv/bin/python -m benchmarks.elastic_throughput [--epochs 1] [--limit-train 6400]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import KD_LOSSES, header, read_run
from edgedistill import api, pretrained
from edgedistill.config import DistillExperiment, TrainExperiment
from edgedistill.distill.distiller import Distiller
from edgedistill.distill.run import run_distill
from edgedistill.elastic import PoolSource
from edgedistill.train.callbacks import Callback
from edgedistill.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
ZOO = ("resnet56-fashion_mnist", "resnet20-fashion_mnist")
FALLBACK = Path("/tmp/elastic_teacher")


def teacher_source(name: str | None = None) -> str:
    """``name``, else the shipped resnet56 teacher (the issue's), else resnet20, else a
    resnet20 trained quickly (2 epochs, 5,000 images)."""
    if name:
        return name
    shipped = pretrained.manifest()
    for zoo in ZOO:
        if zoo in shipped:
            return f"zoo:{zoo}"
    if not (FALLBACK / "model.safetensors").exists():
        subprocess.run([str(ROOT / ".venv" / "bin" / "edgedistill"), "train",
                        str(ROOT / "configs/fashion_mnist/teacher_resnet20.yaml"),
                        "--set", "data.limit_train=5000", "--set", "train.epochs=2",
                        "--set", "train.threads=1", "--out", str(FALLBACK)], check=True)
    return str(FALLBACK)


def common(args) -> dict:
    return {"seed": 0,
            "data": {"dataset": "fashion_mnist", "limit_train": args.limit_train,
                     "limit_test": args.limit_test, "batch_size": args.batch},
            "train": {"epochs": args.epochs, "threads": 1, "progress": False,
                      "optimizer": {"name": "sgd", "lr": 0.05}}}


def kd_config(args, teacher: str, mode: str, replicas: list[dict] | None = None,
              wire: str = "fp16") -> DistillExperiment:
    pool = {"replicas": replicas or [{}], "max_in_flight": args.in_flight,
            "wire_precision": wire}
    return DistillExperiment.model_validate({
        **common(args), "name": f"kd_{mode}", "student": {"name": "resnet8"},
        # speed, not accuracy: the shipped resnet56 (5 of its 30 planned epochs) serves
        "teacher": {"source": teacher, "mode": mode, "pool": pool, "allow_unfinished": True},
        "losses": KD_LOSSES})



class KillEvery(Callback):
    """After ``calm`` steps, kills a live replica every ``every_s`` seconds, ``kills``
    times, then lets one whole epoch run without kills; logs every step's end."""

    def __init__(self, source: PoolSource, every_s: float, kills: int, calm: int = 10):
        self.source, self.every_s, self.left, self.calm = source, every_s, kills, calm
        self.kill_times: list[float] = []
        self.kill_epochs: set[int] = set()
        self.step_ends: list[float] = []
        self.steps: list[tuple[int, int]] = []

    def on_step_end(self, trainer, m) -> None:
        import ray

        now = time.perf_counter()
        self.step_ends.append(now)
        self.steps.append((m["epoch"], m["step"]))
        alive = [r for r in self.source.pool.replicas.values() if r.state == "alive"]
        last = self.kill_times[-1] if self.kill_times else 0.0
        if self.left and len(self.steps) > self.calm and now - last >= self.every_s and alive:
            ray.kill(alive[0].actor)
            self.kill_times.append(now)
            self.kill_epochs.add(m["epoch"])
            self.left -= 1

    def on_epoch_end(self, trainer, record) -> str | None:
        calm_epoch = not self.left and record["epoch"] > max(self.kill_epochs, default=-1)
        return "kills done and one calm epoch after them" if calm_epoch else None


def failure_figures(args, teacher: str, out: Path) -> dict:
    """Train under repeated replica kills: batches lost or repeated, how long the pool
    took to notice each death (and re-send), the student's extra stall per kill, and
    images/s during and after the kills."""
    from edgedistill.models import create_model

    replicas = [{"backend": args.fault_backend, "num_cpus": 0.5, "count": args.fault_replicas}]
    cfg = kd_config(args, teacher, "pool", replicas)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 1000})})
    cpu = torch.device("cpu")
    train_data, test_data = api.build_data(cfg.data, cfg.seed)
    train_pipe, test_pipe = api.build_pipelines(cfg.data, train_data, test_data, cfg.seed, cpu)
    events: list[float] = []
    source = PoolSource(teacher, cfg.teacher.pool, cpu,
                        log=lambda m: events.append(time.perf_counter()) if " lost: " in m
                        else None)
    student = create_model("resnet8", num_classes=10, in_channels=1)
    distiller = Distiller(student, api.load_model(teacher), source, cfg.losses)
    distiller.setup(train_pipe, train_pipe.batch(0, 0))
    killer = KillEvery(source, args.kill_every, args.kills)
    trainer = Trainer(distiller, train_pipe, test_pipe, cfg, out / "faults", [killer], cpu)
    try:
        trainer.fit()
    finally:
        ledger = source.accounting()
        source.close()
    durations = [b - a for a, b in itertools.pairwise(killer.step_ends)]
    calm = statistics.median(durations[:killer.calm - 1])
    detect = [min((e for e in events if e >= t), default=float("nan")) - t
              for t in killer.kill_times]
    stalls = [max([d for end, d in zip(killer.step_ends[1:], durations, strict=True)
                   if t < end <= t + args.kill_every], default=calm) - calm
              for t in killer.kill_times]
    expected = [(e, s) for e in range(trainer.epoch) for s in range(len(train_pipe))]
    speeds = {r["epoch"]: r["images_per_s"] for r in trainer.records}
    return {"kills": len(killer.kill_times), "steps": len(killer.steps),
            "lost": len(set(expected) - set(killer.steps)),
            "repeated": len(killer.steps) - len(set(killer.steps)),
            "accepted_max": max(ledger.accepted.values()), "resent": ledger.resent,
            "detect_mean_s": statistics.mean(detect), "detect_max_s": max(detect),
            "stall_mean_s": statistics.mean(stalls), "stall_max_s": max(stalls),
            "calm_step_s": calm, "calm_steps": killer.calm,
            "during": statistics.median(speeds[e] for e in sorted(killer.kill_epochs)),
            "after": speeds[max(speeds)]}


def print_faults(args, f: dict) -> None:
    print(f"\nFailure figures: pool of {args.fault_replicas} {args.fault_backend} replicas "
          f"(0.5 CPU each), one killed with ray.kill every {args.kill_every:g} s after "
          f"{f['calm_steps']} calm steps: {f['kills']} kills over {f['steps']} steps.\n")
    print("| figure | value |\n|---|---|")
    rows = [("batches lost / trained twice", f"{f['lost']} / {f['repeated']}"),
            ("max replies accepted per batch", f["accepted_max"]),
            ("requests re-sent", f["resent"]),
            ("kill -> death noticed, re-sent (mean / max)",
             f"{f['detect_mean_s']:.2f} s / {f['detect_max_s']:.2f} s"),
            ("student's extra stall per kill (mean / max)",
             f"{f['stall_mean_s']:.2f} s / {f['stall_max_s']:.2f} s "
             f"(calm step {f['calm_step_s']:.2f} s)"),
            ("images/s during kills / epoch after", f"{f['during']:.0f} / {f['after']:.0f}")]
    for name, value in rows:
        print(f"| {name} | {value} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default=None, help="zoo:NAME or run dir (default: the "
                    "shipped resnet56, else resnet20)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--limit-train", type=int, default=6400)
    ap.add_argument("--limit-test", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--in-flight", type=int, default=4)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--kill-every", type=float, default=10.0)
    ap.add_argument("--fault-replicas", type=int, default=3)
    ap.add_argument("--fault-backend", default="onnx-int8")
    ap.add_argument("--no-throughput", action="store_true", help="failure figures only")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import ray

    torch.set_num_threads(1)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    out = Path(args.out or tempfile.mkdtemp(prefix="elastic_bench_"))
    teacher = teacher_source(args.teacher)
    print(header("python -m benchmarks.elastic_throughput " + " ".join(sys.argv[1:])))
    if not args.no_throughput:
        throughput_table(args, teacher, out)
    if args.kills:
        print_faults(args, failure_figures(args, teacher, out))
    ray.shutdown()


def throughput_table(args, teacher: str, out: Path) -> None:
    student = TrainExperiment.model_validate(
        {**common(args), "name": "student", "model": {"name": "resnet8"}})
    api.train(student, out / "student", progress=False)
    rows = {"student alone (limit)": read_run(out / "student")}
    run_distill(kd_config(args, teacher, "online"), out / "online", progress=False)
    rows["online KD"] = read_run(out / "online")
    for backend in ("torch", "onnx-int8"):
        for n in (1, 2):
            name = f"pool {backend} x{n}"
            replicas = [{"backend": backend, "num_cpus": 1, "count": n}]
            run_distill(kd_config(args, teacher, "pool", replicas), out / name, progress=False)
            rows[name] = read_run(out / name)
    # fp32 on the wire: the online teacher's exact answers, so the online run's accuracy
    name = "pool torch x2, fp32 wire"
    replicas = [{"backend": "torch", "num_cpus": 1, "count": 2}]
    run_distill(kd_config(args, teacher, "pool", replicas, wire="fp32"), out / name,
                progress=False)
    rows[name] = read_run(out / name)
    alone, online = rows["student alone (limit)"], rows["online KD"]
    print(f"Teacher {teacher} -> resnet8; {args.epochs} epoch(s) on {args.limit_train} "
          f"Fashion-MNIST images, test on {args.limit_test}; batch {args.batch}; KD T=4, "
          f"ce 0.5 + kd 0.5; student 1 thread; replicas 1 CPU/thread each; "
          f"{os.cpu_count()} cores, shared with other work.\n")
    print("| setup | images/s | vs online KD | vs student alone | test acc | teacher wait s |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['images_per_s']:.0f} | "
              f"{r['images_per_s'] / online['images_per_s']:.2f}x | "
              f"{r['images_per_s'] / alone['images_per_s']:.2f}x | {r['test_acc']:.4f} | "
              f"{r['teacher_wait_s']:.1f} |")


if __name__ == "__main__":
    main()

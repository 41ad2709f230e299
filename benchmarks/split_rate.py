"""Rate-accuracy and latency study of split computing at 96x96 RGB against its real
alternatives: the input sent as JPEG/WebP/PNG, 8-bit bottlenecks, entropy-coded
bottlenecks, and small students run entirely on the device.

Stages (each skipped when its output exists, so an interrupted study resumes):

1. the teacher: ``split_upscaled.train_teacher`` on ``--teacher-train`` resized images;
2. the 8-bit heads (``--config``) and the entropy heads (``--entropy-config``), each a
   ``split train`` run;
3. the input sweep: every test image as JPEG / WebP at several qualities and PNG, the
   bytes PIL writes, the teacher's accuracy on the decoded images;
4. the local students, distilled from the teacher (KD, T=4, + 0.1 CE) on the heads'
   training images: torchvision MobileNetV2 (ImageNet layout) and the student
   ``edgedistill design`` picks for the device (a latency budget of a quarter of the
   teacher's on the same device, ``--design-time-fraction``);
5. ``split plan`` of both runs with the students as local models (device
   ``--device-slowdown`` x this host, given rtt and request overhead), merged;
6. the rate-accuracy PNG and table, the latency-vs-bandwidth PNG, ``summary.json``.

    nice -n 10 .venv/bin/python benchmarks/split_rate.py --out runs/split_rate \\
        --results benchmarks/results/split_rate
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.split_upscaled import train_teacher  # noqa: E402
from edgedistill import api  # noqa: E402
from edgedistill.config import (  # noqa: E402
    ModelConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainExperiment,
    load_config,
)
from edgedistill.config.split import SplitExperiment  # noqa: E402
from edgedistill.split.evaluate import accuracy_on  # noqa: E402
from edgedistill.split.images import decode_image  # noqa: E402
from edgedistill.split.train import load_split_data, run_split_train  # noqa: E402
from edgedistill.train.trainer import Trainer  # noqa: E402

JPEG = (95, 90, 75, 50, 30, 10)
WEBP = (90, 75, 50, 25, 10)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/split/fashion_mnist96_rate.yaml")
    p.add_argument("--teacher-config", default="configs/split/fashion_mnist96_resnet18.yaml",
                   help="data and schedule of the teacher's training")
    p.add_argument("--entropy-config", default="configs/split/fashion_mnist96_entropy.yaml")
    p.add_argument("--out", default="runs/split_rate")
    p.add_argument("--results", default="benchmarks/results/split_rate")
    p.add_argument("--teacher-epochs", type=int, default=3)
    p.add_argument("--teacher-train", type=int, default=30000)
    p.add_argument("--teacher-weights", help="use this teacher weights file as it is")
    p.add_argument("--anneal-from", help="checkpoint of a teacher run cut short: anneal it "
                                          "one epoch instead of training the teacher")
    p.add_argument("--anneal-train", type=int, default=5000)
    p.add_argument("--anneal-lr", type=float, default=0.01)
    p.add_argument("--student-epochs", type=int, default=4)
    p.add_argument("--device-slowdown", type=float, default=10.0)
    p.add_argument("--rtt-ms", type=float, default=10.0)
    p.add_argument("--rpc-overhead-ms", type=float, default=4.0,
                   help="per-request cost (the 2026-11-23 calibration measured 4.01 ms)")
    p.add_argument("--design-time-fraction", type=float, default=0.25)
    p.add_argument("--sweep", default="0.1,0.2,0.5,1,2,5,10,20,50,100")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def stage(path: Path, build):
    """``build()``'s JSON result, cached in ``path``."""
    if path.exists():
        return json.loads(path.read_text())
    tic = time.perf_counter()
    result = build()
    result["seconds"] = time.perf_counter() - tic
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return result


def pil_bytes(image: np.ndarray, kind: str, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image.transpose(1, 2, 0)).save(buf, kind, **options)
    return buf.getvalue()


def input_sweep(teacher: nn.Module, test) -> dict:
    """Bytes per image and the teacher's accuracy for each format and quality."""
    images = test.images.numpy()
    points = [("PNG", "png", {})] + [("JPEG", f"jpeg{q}", {"quality": q}) for q in JPEG] + [
        ("WEBP", f"webp{q}", {"quality": q}) for q in WEBP]
    out = {}
    for kind, name, options in points:
        blobs = [pil_bytes(im, kind, **options) for im in images]
        if kind == "WEBP":
            decoded = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))
                                .transpose(2, 0, 1) for b in blobs])
        else:
            decoded = np.stack([decode_image(b, 3) for b in blobs])
        acc = accuracy_on(teacher, decoded, test.labels, test.mean, test.std,
                          torch.device("cpu"))
        out[name] = {"format": kind.lower(), "quality": options.get("quality"),
                     "bytes_mean": float(np.mean([len(b) for b in blobs])), "acc": acc}
        print(f"input {name}: {out[name]['bytes_mean']:.1f} B, acc {acc:.4f}", flush=True)
    return {"points": out}


def anneal_teacher(cfg: SplitExperiment, checkpoint: Path, out: Path, lr: float,
                   threads: int) -> Path:
    """A teacher cut short (CPU budget): its checkpoint's weights trained one more epoch
    on ``cfg.data`` with SGD from ``lr`` down to 0 (cosine), so the study's teacher is an
    annealed one; returns the run dir."""
    from edgedistill.models import create_model
    from edgedistill.train.checkpoint import load_checkpoint
    from edgedistill.train.tasks import Supervised

    if (out / "summary.json").exists():
        return out
    torch.set_num_threads(threads)
    train_data, test_data = load_split_data(cfg)
    net = create_model("resnet18", num_classes=10, in_channels=3)
    state = load_checkpoint(checkpoint)["model"]
    net.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    run_cfg = TrainExperiment(
        name="teacher_anneal", seed=cfg.seed, data=cfg.data, model=ModelConfig(name="resnet18"),
        train=cfg.train.model_copy(update={
            "epochs": 1, "threads": threads, "schedule": ScheduleConfig(name="cosine"),
            "optimizer": OptimizerConfig(name="sgd", lr=lr)}))
    pipes = api.build_pipelines(cfg.data, train_data, test_data, cfg.seed, torch.device("cpu"))
    Trainer(Supervised(net), *pipes, run_cfg, out).fit()
    return out


class KDStudent(nn.Module):
    """KD (T=4) on the teacher's logits + 0.1 cross-entropy; the teacher stays frozen."""

    def __init__(self, student: nn.Module, teacher: nn.Module):
        super().__init__()
        self.student = student
        self.teacher = teacher.eval().requires_grad_(False)

    @property
    def eval_model(self) -> nn.Module:
        return self.student

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, batch):
        from edgedistill.losses.kd import kd_divergence

        with torch.no_grad():
            t = self.teacher(batch.images)
        logits = self.student(batch.images)
        return logits, {"kd": kd_divergence(logits, t, 4.0),
                        "ce": 0.1 * F.cross_entropy(logits, batch.labels)}


def distill_student(cfg: SplitExperiment, teacher: nn.Module, spec: dict, out: Path,
                    epochs: int) -> str:
    """Distil ``spec`` on the config's resized data into ``out``; the weights file."""
    from edgedistill.models import create_model

    weights = out / "model.safetensors"
    if (out / "summary.json").exists():
        return str(weights)
    train_data, test_data = load_split_data(cfg)
    student = create_model(**spec)
    pipes = api.build_pipelines(cfg.data, train_data, test_data, cfg.seed, torch.device("cpu"))
    kwargs = {k: v for k, v in spec.items() if k not in ("name", "num_classes", "in_channels")}
    run_cfg = TrainExperiment(
        name=out.name, seed=cfg.seed, data=cfg.data,
        model=ModelConfig(name=spec["name"], kwargs=kwargs),
        train=cfg.train.model_copy(update={
            "epochs": epochs, "optimizer": OptimizerConfig(name="adam", lr=2e-3,
                                                           weight_decay=0.0)}))
    Trainer(KDStudent(student, teacher), *pipes, run_cfg, out).fit()
    return str(weights)


def design_pick(teacher_dir: Path, teacher_device_ms: float, host_gflops: float,
                slowdown: float, fraction: float, out: Path) -> dict:
    """The student ``edgedistill design`` picks for the emulated device: speed = this
    host's over ``slowdown``, a time budget of ``fraction`` of the teacher's there."""
    from edgedistill.design.profiles import DeviceProfile
    from edgedistill.design.run import run_design

    profile = DeviceProfile(name=f"host/{slowdown:g}", flops_per_s=host_gflops * 1e9 / slowdown,
                            max_time_ms=fraction * teacher_device_ms,
                            source="this host's measured teacher GFLOP/s over the slowdown")
    design = run_design(str(teacher_dir), profile, out, input_shape=(3, 96, 96), measure=0)
    return {"spec": design.chosen.spec, "name": design.chosen.name,
            "budget_ms": profile.max_time_ms, "flops_per_s": profile.flops_per_s}


def merged_plan(plans: list[dict], meta: dict, bandwidths: list[float], rtt_ms: float,
                rpc_ms: float, results: Path) -> tuple[list, list[dict]]:
    """Every option of both runs' plans (teacher, locals and inputs once) on one plan."""
    from dataclasses import fields

    from edgedistill.split.planner import Option, plan, plan_markdown, plot_plan

    names = {f.name for f in fields(Option)}
    options, seen = [], set()
    for result in plans:
        for o in result["options"]:
            if o["name"] not in seen:
                seen.add(o["name"])
                options.append(Option(**{k: v for k, v in o.items() if k in names}))
    rows = plan(options, bandwidths, meta["teacher_acc"], meta["tolerance"], rtt_ms, rpc_ms)
    settings = {**plans[0]["settings"], "merged": "8bit + entropy runs"}
    (results / "plan.md").write_text(plan_markdown(options, rows, meta["teacher_acc"],
                                                   meta["tolerance"], settings, rtt_ms, rpc_ms))
    plot_plan(options, rows, results / "latency_vs_bandwidth.png")
    return options, rows


def rate_points(runs: dict[str, Path], inputs: dict) -> list[dict]:
    """One point per way of sending: bytes per image and accuracy on the same test images."""
    from edgedistill.split.model import read_meta

    points = [{"kind": f"input {v['format']}", "name": k, "bytes": v["bytes_mean"],
               "acc": v["acc"]} for k, v in inputs["points"].items()]
    for run in runs.values():
        for b in read_meta(run)["bottlenecks"]:
            kind = "entropy" if b.get("codec") == "entropy" else "8-bit"
            points.append({"kind": f"{kind} {'HND+KD' if b['stage'] == 'kd' else 'HND'}",
                           "name": b["name"], "bytes": b["bytes_per_sample"],
                           "acc": b["acc_quantized"]})
    return sorted(points, key=lambda p: (p["kind"], p["bytes"]))


def goals(points: list[dict], teacher_acc: float) -> dict:
    """The issue's two goals, computed from the points (accuracies as fractions)."""
    ent = [p for p in points if p["kind"].startswith("entropy")]
    eight = [p for p in points if p["kind"].startswith("8-bit")]
    jpeg95 = next(p for p in points if p["name"] == "jpeg95")["bytes"]
    vs8 = []
    for e in ent:
        rivals = [b for b in eight if b["acc"] >= e["acc"] - 0.005]
        if rivals:
            best = min(rivals, key=lambda b: b["bytes"])
            vs8.append({"entropy": e["name"], "eight_bit": best["name"],
                        "ratio": best["bytes"] / e["bytes"]})
    near = [e for e in ent if e["acc"] >= teacher_acc - 0.01]
    vs_jpeg = [{"entropy": e["name"], "ratio": jpeg95 / e["bytes"],
                "vs_teacher_pt": 100 * (e["acc"] - teacher_acc)} for e in near]
    return {"vs_8bit": vs8, "vs_8bit_met": any(v["ratio"] >= 2 for v in vs8),
            "vs_jpeg95": vs_jpeg, "vs_jpeg95_met": any(v["ratio"] >= 20 for v in vs_jpeg)}


def plot_rate(points: list[dict], teacher_acc: float, locals_: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for kind in sorted({p["kind"] for p in points}):
        mine = sorted((p for p in points if p["kind"] == kind), key=lambda p: p["bytes"])
        ax.plot([p["bytes"] for p in mine], [p["acc"] for p in mine], marker="o", ms=4,
                label=kind)
    ax.axhline(teacher_acc, color="k", lw=0.8, ls=":", label=f"teacher {teacher_acc:.3f}")
    for o in locals_:
        ax.axhline(o.accuracy, lw=0.8, ls="--", color="gray")
        ax.text(30, o.accuracy, f" {o.name} (on the device, sends 0 B)", fontsize=7,
                va="bottom")
    ax.set_xscale("log")
    ax.set_xlabel("bytes per image on the wire (whole message)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rate_markdown(points: list[dict], teacher_acc: float, locals_: list, met: dict) -> str:
    from edgedistill.report.markdown import markdown_table

    rows = [{"kind": p["kind"], "option": p["name"], "bytes/image": f"{p['bytes']:.1f}",
             "accuracy": f"{p['acc']:.4f}", "vs teacher (pt)":
             f"{100 * (p['acc'] - teacher_acc):+.2f}"} for p in points]
    rows += [{"kind": "local", "option": o.name, "bytes/image": "0", "accuracy":
              f"{o.accuracy:.4f}", "vs teacher (pt)": f"{100 * (o.accuracy - teacher_acc):+.2f}"}
             for o in locals_]
    lines = [markdown_table(rows), "",
             "Entropy vs the cheapest 8-bit head at equal accuracy (within 0.5 pt): " + (
                 ", ".join(f"{v['entropy']} {v['ratio']:.2f}x fewer than {v['eight_bit']}"
                           for v in met["vs_8bit"]) or "no 8-bit head that accurate") +
             f" (goal 2x: {'met' if met['vs_8bit_met'] else 'not met'}).",
             "Entropy within 1 pt of the teacher vs JPEG-95: " + (
                 ", ".join(f"{v['entropy']} {v['ratio']:.1f}x ({v['vs_teacher_pt']:+.2f} pt)"
                           for v in met["vs_jpeg95"]) or "no entropy head that accurate") +
             f" (goal 20x: {'met' if met['vs_jpeg95_met'] else 'not met'})."]
    return "\n".join(lines) + "\n"


def main() -> None:
    from edgedistill.models import count_flops
    from edgedistill.split.measure import run_plan
    from edgedistill.split.model import read_meta
    from edgedistill.split.planner import ComputeProfile, split_vs_local

    args = parse()
    torch.set_num_threads(args.threads)
    out, results = Path(args.out), Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args.config, SplitExperiment)
    teacher_cfg = load_config(args.teacher_config, SplitExperiment, [
        f"data.limit_train={args.teacher_train}", "train.schedule.warmup_epochs=0.25"])
    if args.teacher_weights:
        teacher_dir = Path(args.teacher_weights)
    elif args.anneal_from:
        anneal_cfg = load_config(args.teacher_config, SplitExperiment,
                                 [f"data.limit_train={args.anneal_train}"])
        teacher_dir = anneal_teacher(anneal_cfg, Path(args.anneal_from), out / "teacher_anneal",
                                     args.anneal_lr, args.threads)
    else:
        teacher_dir = train_teacher(teacher_cfg, out / "teacher", args.teacher_epochs,
                                    "resnet18", 0.05, args.threads)
    teacher = api.load_model(str(teacher_dir))
    runs = {}
    for name, path in (("8bit", args.config), ("entropy", args.entropy_config)):
        run_cfg = load_config(path, SplitExperiment, [f"teacher.source={teacher_dir}"])
        runs[name] = out / name
        if not (runs[name] / "split.json").exists():
            print(f"training the {name} heads", flush=True)
            run_split_train(run_cfg, runs[name], resume=runs[name].exists(), progress=False)
    meta = read_meta(runs["8bit"])
    _, test = load_split_data(cfg)
    inputs = stage(out / "inputs.json", lambda: input_sweep(teacher, test))
    device = ComputeProfile(name=f"host/{args.device_slowdown:g}", slowdown=args.device_slowdown)
    mbits = [float(b) for b in args.sweep.split(",")]

    def plan_of(run: Path, locals_: list[str], tag: str) -> dict:
        return run_plan(run, device, ComputeProfile(), mbits, locals_, args.rtt_ms,
                        args.rpc_overhead_ms, out=run / f"plan-{tag}")

    first = plan_of(runs["8bit"], [], "nolocal")
    step = first["measured"]["teacher"]["device_step_ms"] - first["measured"]["normalize_ms"]
    host_gflops = count_flops(teacher, (3, 96, 96)) / step / 1e6
    pick = stage(out / "design_pick.json", lambda: design_pick(
        teacher_dir, first["options"][0]["device_ms"], host_gflops, args.device_slowdown,
        args.design_time_fraction, out / "design"))
    students = {"mobilenetv2": {"name": "torchvision:mobilenet_v2", "width_mult": 1.0,
                                "num_classes": 10, "in_channels": 3},
                "designed": pick["spec"]}
    local = [distill_student(cfg, teacher, spec, out / f"student-{key}", args.student_epochs)
             for key, spec in students.items()]
    plans = [plan_of(runs[k], local, "local") for k in ("8bit", "entropy")]
    options, rows = merged_plan(plans, meta, mbits, args.rtt_ms, args.rpc_overhead_ms, results)
    locals_ = [o for o in options if o.kind == "local"]
    points = rate_points(runs, inputs)
    met = goals(points, meta["teacher_acc"])
    plot_rate(points, meta["teacher_acc"], locals_, results / "rate_accuracy.png")
    (results / "rate_accuracy.md").write_text(rate_markdown(points, meta["teacher_acc"],
                                                            locals_, met))
    run_summary = teacher_dir / "summary.json"
    teacher_summary = json.loads(run_summary.read_text()) if run_summary.exists() else {}
    summary = {"date": date.today().isoformat(), "argv": sys.argv, "teacher_source": str(
               teacher_dir), "teacher": {k: teacher_summary.get(k) for k in
                                         ("final_test_acc", "best_test_acc", "epochs_run",
                                          "wall_seconds", "images_seen")},
               "teacher_acc_study_test": meta["teacher_acc"], "design_pick": pick,
               "host_teacher_gflops": host_gflops, "points": points, "goals": met,
               "split_vs_local": split_vs_local(options, rows), "plan": rows}
    (results / "summary.json").write_text(json.dumps(summary, indent=2))
    print((results / "rate_accuracy.md").read_text())
    print((results / "plan.md").read_text())


if __name__ == "__main__":
    main()

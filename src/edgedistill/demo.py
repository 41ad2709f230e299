"""``edgedistill demo``: a shipped teacher, one student trained from scratch and the
same student distilled with hint+kd, compared in one table and a markdown report."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from edgedistill import pretrained
from edgedistill.config import DistillExperiment, TrainExperiment
from edgedistill.errors import UsageError

DEMO_TEACHERS = ("resnet20-fashion_mnist", "resnet56-fashion_mnist")  # cheaper first


def pick_teacher() -> str:
    """The most accurate shipped Fashion-MNIST teacher (the cheaper one on a tie)."""
    shipped = pretrained.manifest()
    present = [name for name in DEMO_TEACHERS if name in shipped]
    if present:
        return max(present, key=lambda name: (shipped[name].get("test_acc") or 0.0,
                                              -DEMO_TEACHERS.index(name)))
    raise UsageError("no Fashion-MNIST teacher is shipped; train one with "
                     "`edgedistill train configs/fashion_mnist/teacher_resnet20.yaml`")


def demo_configs(teacher: str, epochs: int, limit_train: int | None) -> tuple:
    common = {"seed": 0, "data": {"dataset": "fashion_mnist", "limit_train": limit_train,
                                  "batch_size": 128},
              "train": {"epochs": epochs, "optimizer": {"name": "sgd", "lr": 0.1},
                        "schedule": {"name": "cosine"}}}
    scratch = TrainExperiment.model_validate(
        {**common, "name": "resnet8_scratch", "model": {"name": "resnet8"}})
    distilled = DistillExperiment.model_validate({
        **common, "name": "resnet8_hint_kd",
        "teacher": {"source": f"zoo:{teacher}", "mode": "cache", "cache": {"num_draws": 2}},
        "student": {"name": "resnet8"},
        "losses": [{"name": "ce", "weight": 0.1},
                   {"name": "hint+kd", "student_layers": ["stage-1"],
                    "teacher_layers": ["stage-1"],
                    "params": {"temperature": 4.0, "kd_weight": 0.9, "hint_weight": 1.0}}],
    })
    return scratch, distilled


def model_row(label: str, technique: str, model, acc: float, shape, tmp: Path) -> dict:
    from edgedistill.export.onnx import export_onnx, measure_latency, session
    from edgedistill.models import student_name, summarize

    info = summarize(model, shape)
    onnx_path = export_onnx(model, shape, tmp / f"{label}.onnx")
    latency = measure_latency(session(onnx_path, threads=1), shape)["median_ms"]
    return {"model": student_name(model.spec), "role": label, "technique": technique,
            "test_acc": acc, "params": info["params"], "mflops": info["flops"] / 1e6,
            "kb_fp32": info["bytes_fp32"] / 1024, "ms_b1_ort_1thread": latency}


def run_demo(out: str | Path, epochs: int = 3, limit_train: int | None = 20000) -> Path:
    from rich.console import Console
    from rich.table import Table

    from edgedistill import api
    from edgedistill.distill.run import run_distill
    from edgedistill.report.evaluation import read_summary
    from edgedistill.report.markdown import markdown_table
    from edgedistill.report.plots import plot_accuracy_comparison

    out = Path(out)
    teacher_name = pick_teacher()
    scratch_cfg, kd_cfg = demo_configs(teacher_name, epochs, limit_train)
    console = Console(width=150)
    console.print(f"[bold]edgedistill demo[/]: teacher zoo:{teacher_name}, student resnet8, "
                  f"{epochs} epochs on {limit_train or 'all'} Fashion-MNIST training images")
    console.print("1/2 resnet8 from scratch")
    api.train(scratch_cfg, out / "resnet8_scratch", resume=True)
    console.print("2/2 resnet8 distilled with hint+kd (teacher outputs cached once)")
    run_distill(kd_cfg, out / "resnet8_hint_kd", resume=True)
    scratch_sum = read_summary(out / "resnet8_scratch")
    kd_sum = read_summary(out / "resnet8_hint_kd")
    shape = (1, 1, 28, 28)
    tmp = out / "onnx"
    tmp.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    rows = [
        model_row("teacher", "shipped", api.load_model(f"zoo:{teacher_name}"),
                  kd_sum["teacher_acc"], shape, tmp),
        model_row("student", "scratch", api.load_model(out / "resnet8_scratch"),
                  scratch_sum["final_test_acc"], shape, tmp),
        model_row("student", "hint+kd", api.load_model(out / "resnet8_hint_kd"),
                  kd_sum["final_test_acc"], shape, tmp),
    ]
    table = Table(title="edgedistill demo (Fashion-MNIST test set, 10,000 images)")
    for col in rows[0]:
        table.add_column(col)
    for row in rows:
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) and k == "test_acc" else
                        f"{v:.2f}" if isinstance(v, float) else str(v) for k, v in row.items()])
    console.print(table)
    curves = {}
    for name in ("resnet8_scratch", "resnet8_hint_kd"):
        lines = (out / name / "metrics.jsonl").read_text().splitlines()
        curves[name] = [json.loads(x)["test_acc"] for x in lines]
    plot_accuracy_comparison(curves, out / "accuracy.png", "resnet8: scratch vs hint+kd")
    gain = kd_sum["final_test_acc"] - scratch_sum["final_test_acc"]
    report = out / "REPORT.md"
    report.write_text(
        "# edgedistill demo\n\n"
        f"Teacher `zoo:{teacher_name}`; student resnet8; {epochs} epochs on "
        f"{limit_train or 'all'} training images; test set: all 10,000 images.\n"
        f"Distillation: `ce` (weight 0.1) + `hint+kd` (hint on the last stage, KD T=4), "
        f"teacher outputs cached for 2 augmentation draws.\n\n"
        + markdown_table(rows) +
        f"\n\nhint+kd minus scratch: {gain * 100:+.2f} points of test accuracy.\n\n"
        "![accuracy per epoch](accuracy.png)\n\n"
        "Training curves: `resnet8_scratch/plots/curves.png`, "
        "`resnet8_hint_kd/plots/curves.png`. Latency: ONNX Runtime, batch 1, 1 thread, "
        "median of 30 calls on this machine.\n")
    return report

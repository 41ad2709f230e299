"""``edgedistill demo``: the shipped teacher, resnet8 trained from scratch and the same
student distilled with KD, compared in one table and a markdown report.

The setting is one cell pair (seed 0) of the study ``configs/studies/fashion_mnist_cpu_10k.yaml``
(``DEMO_STUDY`` is that file's content, and a test keeps the two equal), so the gain the
demo shows is the one that study measured over three seeds, not a lucky single run.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from edgedistill.config import DistillExperiment

TEACHER = "resnet20-fashion_mnist"
TECHNIQUE = "kd"
STUDENT = "shallower"
DEMO_STUDY = {
    "name": "fashion_mnist_cpu_10k",
    "teacher": {"source": f"zoo:{TEACHER}", "mode": "cache", "cache": {"num_draws": 8}},
    "students": [{"label": "shallower", "derive": "shallower"},
                 {"label": "narrower-w0.5", "derive": "narrower", "width": 0.5}],
    "techniques": ["none", "kd"],
    "seeds": [0, 1, 2],
    "data": {"dataset": "fashion_mnist", "limit_train": 10000, "batch_size": 64},
    "train": {"epochs": 8, "threads": 1,
              "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0005},
              "schedule": {"name": "cosine"}, "checkpoint_every_steps": 50},
    "target": {"kind": "scratch_fraction", "fraction": 0.99},
    "workers": 2,
}


def demo_configs(out: Path, epochs: int | None = None, limit_train: int | None = None
                 ) -> tuple[DistillExperiment, DistillExperiment]:
    """(scratch, distilled): the study's seed-0 cells of resnet8 without a teacher and with
    KD, using every core; ``epochs``/``limit_train`` shrink them (tests)."""
    from edgedistill.config.study import StudyConfig
    from edgedistill.study.grid import Cell, cell_config
    from edgedistill.study.techniques import resolve_techniques

    raw = json.loads(json.dumps(DEMO_STUDY))
    if epochs is not None:
        raw["train"]["epochs"] = raw["teacher"]["cache"]["num_draws"] = epochs
    if limit_train is not None:
        raw["data"]["limit_train"] = limit_train
    study = StudyConfig.model_validate(raw)
    techniques = {t.label: t for t in resolve_techniques(study)}
    teacher, cache = study.teacher.source, out / "teacher_cache"
    return tuple(cell_config(study, Cell(STUDENT, label, 0), techniques[label], teacher, cache,
                             threads=None) for label in ("none", TECHNIQUE))


def model_row(label: str, technique: str, model, acc: float, shape, tmp: Path) -> dict:
    from edgedistill.export.onnx import export_onnx, measure_latency, session
    from edgedistill.models import student_name, summarize

    info = summarize(model, shape)
    onnx_path = export_onnx(model, shape, tmp / f"{label}.onnx")
    latency = measure_latency(session(onnx_path, threads=1), shape)["median_ms"]
    return {"model": student_name(model.spec), "role": label, "technique": technique,
            "test_acc": acc, "params": info["params"], "mflops": info["flops"] / 1e6,
            "kb_fp32": info["bytes_fp32"] / 1024, "ms_b1_ort_1thread": latency}


def run_demo(out: str | Path, epochs: int | None = None,
             limit_train: int | None = None) -> Path:
    from rich.console import Console
    from rich.table import Table

    from edgedistill import api
    from edgedistill.distill.run import run_distill
    from edgedistill.report.evaluation import read_summary
    from edgedistill.report.markdown import markdown_table
    from edgedistill.report.plots import plot_accuracy_comparison

    out = Path(out)
    scratch_cfg, kd_cfg = demo_configs(out, epochs, limit_train)
    d, n_epochs = kd_cfg.data, kd_cfg.train.epochs
    names = {"scratch": "resnet8_scratch", TECHNIQUE: f"resnet8_{TECHNIQUE}"}
    console = Console(width=150)
    console.print(f"[bold]edgedistill demo[/]: teacher zoo:{TEACHER}, student resnet8, "
                  f"{n_epochs} epochs on {d.limit_train or 'all'} Fashion-MNIST training images")
    console.print("1/2 resnet8 from scratch")
    run_distill(scratch_cfg, out / names["scratch"], resume=True)
    console.print(f"2/2 resnet8 distilled with {TECHNIQUE} (teacher outputs cached once)")
    run_distill(kd_cfg, out / names[TECHNIQUE], resume=True)
    sums = {k: read_summary(out / v) for k, v in names.items()}
    shape = (1, 1, 28, 28)
    tmp = out / "onnx"
    tmp.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    rows = [model_row("teacher", "shipped", api.load_model(f"zoo:{TEACHER}"),
                      sums[TECHNIQUE]["teacher_acc"], shape, tmp)]
    rows += [model_row("student", k, api.load_model(out / v), sums[k]["final_test_acc"], shape,
                       tmp) for k, v in names.items()]
    table = Table(title="edgedistill demo (Fashion-MNIST test set, 10,000 images)")
    for col in rows[0]:
        table.add_column(col)
    for row in rows:
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) and k == "test_acc" else
                        f"{v:.2f}" if isinstance(v, float) else str(v) for k, v in row.items()])
    console.print(table)
    curves = {}
    for name in names.values():
        lines = (out / name / "metrics.jsonl").read_text().splitlines()
        curves[name] = [json.loads(x)["test_acc"] for x in lines]
    plot_accuracy_comparison(curves, out / "accuracy.png", f"resnet8: scratch vs {TECHNIQUE}")
    gain = sums[TECHNIQUE]["final_test_acc"] - sums["scratch"]["final_test_acc"]
    console.print(f"{TECHNIQUE} minus scratch: {gain * 100:+.2f} points of test accuracy")
    report = out / "REPORT.md"
    report.write_text(
        "# edgedistill demo\n\n"
        f"Teacher `zoo:{TEACHER}`; student resnet8; {n_epochs} epochs on "
        f"{d.limit_train or 'all'} training images, batch {d.batch_size}; test set: all "
        "10,000 images. These are the seed-0 cells of "
        "`configs/studies/fashion_mnist_cpu_10k.yaml`, whose three seeds measure this gain "
        "(`benchmarks/studies/fashion_mnist_cpu_10k/REPORT.md`).\n"
        "Distillation: `ce` (weight 0.1) + `kd` (weight 0.9, T=4), teacher outputs cached "
        "once per augmentation draw.\n\n"
        + markdown_table(rows) +
        f"\n\n{TECHNIQUE} minus scratch: {gain * 100:+.2f} points of test accuracy.\n\n"
        "![accuracy per epoch](accuracy.png)\n\n"
        f"Training curves: `{names['scratch']}/plots/curves.png`, "
        f"`{names[TECHNIQUE]}/plots/curves.png`. Latency: ONNX Runtime, batch 1, 1 thread, "
        "median of 30 calls on this machine.\n")
    return report

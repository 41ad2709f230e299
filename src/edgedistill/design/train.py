"""``design --train``: distil the chosen student, train it from scratch too, and report.

The distillation config starts from ``--config`` (any distill YAML: data, train,
losses, halting) or the defaults below, with the teacher and the designed student
filled in; ``--set`` overrides apply last. The baseline is the same student, data,
schedule and seed without a teacher, trained to the end of the schedule (no halting:
its best chance), and also read at the epoch where the distilled run halted, if it did,
for an equal-compute comparison. The report checks every budget again on the trained,
exported model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgedistill.config import DistillExperiment, TrainExperiment, apply_overrides, validate
from edgedistill.design.halting_report import DEFAULT_RULES, run_halting_report
from edgedistill.design.report import constraint_rows, student_config
from edgedistill.design.search import Design
from edgedistill.report.markdown import markdown_table

DEFAULT_LOSSES = [{"name": "ce", "weight": 1.0},
                  {"name": "hint+kd", "student_layers": ["stage-1"],
                   "teacher_layers": ["stage-1"]}]


def design_configs(design: Design, dataset: str | None, base: dict, overrides: list[str],
                   halting: bool = True) -> tuple[DistillExperiment, TrainExperiment]:
    """The distillation config of the chosen student and its no-teacher baseline."""
    raw = json.loads(json.dumps(base))
    raw.setdefault("name", f"designed-{design.chosen.name}")
    raw["teacher"] = {**raw.get("teacher", {}), "source": design.teacher}
    raw["student"] = student_config(design.chosen)
    raw.setdefault("losses", DEFAULT_LOSSES)
    if not halting:
        raw["halting"] = []
    elif not raw.get("halting"):
        raw["halting"] = [r.model_dump() for r in DEFAULT_RULES["distill"]]
    if dataset:
        raw.setdefault("data", {}).setdefault("dataset", dataset)
    kd = validate(apply_overrides(raw, overrides), DistillExperiment, "design --train config")
    scratch = TrainExperiment(name=f"{kd.name}-scratch", seed=kd.seed, data=kd.data,
                              train=kd.train, model={"name": kd.student.name,
                                                     "kwargs": kd.student.kwargs})
    return kd, scratch


def train_design(design: Design, out: str | Path, kd: DistillExperiment,
                 scratch: TrainExperiment, halting_report: bool = False, resume: bool = False,
                 progress: bool = True) -> dict[str, Any]:
    """Distil (or, with ``halting_report``, distil to the full schedule and with halting),
    train the scratch baseline, export the distilled student, write ``REPORT.md``."""
    from edgedistill import api
    from edgedistill.distill.run import run_distill
    from edgedistill.export.onnx import export_run

    out = Path(out)
    halting = None
    if halting_report:
        halting = run_halting_report(kd, out / "halting", resume, progress)
        kd_dir = out / "halting" / "halted"
        kd_summary = json.loads((kd_dir / "summary.json").read_text())
    else:
        kd_dir = out / "distill"
        kd_summary = run_distill(kd, kd_dir, resume=resume, progress=progress)
    scratch_summary = api.train(scratch, out / "scratch", resume=resume, progress=progress)
    exported = export_run(kd_dir, limit_test=kd.data.limit_test, threads=design.profile.threads)
    lines = (out / "scratch" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    halted = kd_summary.get("halted")
    result = {"student": design.chosen.name, "teacher": design.teacher,
              "scratch_acc_at_halt_epoch": records[halted["epoch"]]["test_acc"] if halted
              else None,
              "teacher_acc": kd_summary["teacher_acc"], "distilled": kd_summary,
              "scratch": scratch_summary, "export": exported, "halting": halting}
    (out / "train.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "REPORT.md").write_text(report_markdown(design, kd, result))
    return result


def _acc_row(label: str, summary: dict, teacher_acc: float) -> dict:
    halted = summary.get("halted") or {}
    return {"model": label, "test acc": summary["final_test_acc"],
            "vs teacher (points)": f"{100 * (summary['final_test_acc'] - teacher_acc):+.2f}",
            "epochs": f"{summary['epochs_run']}/{summary['epochs_planned']}",
            "wall s": summary["wall_seconds"], "halted": halted.get("reason", "-")}


def report_markdown(design: Design, kd: DistillExperiment, result: dict) -> str:
    c, t_acc = design.chosen, result["teacher_acc"]
    kd_s, sc_s, ex = result["distilled"], result["scratch"], result["export"]
    losses = " + ".join(x.name for x in kd.losses)
    rows = constraint_rows(design, c)
    rows.append({"constraint": "ONNX file (trained, fp32)", "budget": "-",
                 "student": f"{ex['onnx_bytes']:,} B", "met": "-"})
    gain = 100 * (kd_s["final_test_acc"] - sc_s["final_test_acc"])
    test = kd.data.limit_test or "all"
    lines = [f"# Designed student {c.name} for `{design.profile.name}`", "",
             f"Teacher `{design.teacher}`; dataset {kd.data.dataset} ({kd.data.limit_train or 'all'}"
             f" training images, {test} test images); {kd.train.epochs}-epoch schedule, seed "
             f"{kd.seed}; distillation losses: {losses}.", "",
             "## Constraints", "", markdown_table(rows),
             "## Accuracy", "",
             markdown_table([{"model": f"teacher ({design.teacher})", "test acc": t_acc,
                              "vs teacher (points)": "-", "epochs": "-", "wall s": "-",
                              "halted": "-"},
                             _acc_row(f"{c.name} distilled ({losses})", kd_s, t_acc),
                             _acc_row(f"{c.name} from scratch", sc_s, t_acc)]),
             f"Distillation minus scratch: **{gain:+.2f} points**"
             + (f" (scratch at the distilled run's halting epoch: "
                f"{result['scratch_acc_at_halt_epoch']:.4f})" if kd_s.get("halted") else "")
             + ". The exported ONNX model "
             f"scores {ex['onnx_test_acc']:.4f} in ONNX Runtime (max |diff| vs PyTorch "
             f"{ex['max_abs_diff_vs_torch']:.2e}).", ""]
    if result["halting"]:
        h = result["halting"]
        lines += ["## Halting", "", markdown_table(h["runs"]),
                  f"Halting saved {100 * h['saved_flops']:.1f}% of training FLOPs for "
                  f"{h['accuracy_delta_points']:+.2f} points (details: halting/HALTING.md).", ""]
    return "\n".join(lines)

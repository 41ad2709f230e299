"""Read every finished cell of a study and write ``study.csv`` (one row per cell),
``summary.csv`` (one row per student x technique), ``study.json`` (everything, curves
included), the plots and ``REPORT.md``. Reads only run directories, so it can be rerun
on a half-finished study at any time."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from edgedistill.config.study import StudyConfig, TechniqueConfig
from edgedistill.study import metrics, plots
from edgedistill.study.findings import findings, markdown_report
from edgedistill.study.grid import cell_dir, cell_state, expand

CELL_COLUMNS = ["student", "student_model", "technique", "seed", "final_acc", "best_acc", "auc",
                "target", "epochs_to_target", "wall_to_target", "images_to_target", "epochs",
                "wall_seconds", "images_seen", "agreement", "teacher_acc", "run_dir"]


def collect(out: Path, cfg: StudyConfig, techniques: list[TechniqueConfig]
            ) -> tuple[list[dict[str, Any]], list[str], dict[str, float | None]]:
    """(finished cells with their figures, unfinished cell keys with state, targets)."""
    cells, missing = [], []
    for cell in expand(cfg, techniques):
        run_dir = cell_dir(out, cell)
        if cell_state(run_dir) != "done":
            state = "failed" if (run_dir / "error.txt").exists() else cell_state(run_dir)
            missing.append(f"{cell.key} ({state})")
            continue
        summary = json.loads((run_dir / "summary.json").read_text())
        records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()
                   if x.strip()]
        cells.append({"student": cell.student, "technique": cell.technique, "seed": cell.seed,
                      "student_model": summary.get("student"), "records": records,
                      "run_dir": str(run_dir.relative_to(out))})
    scratch = {}
    for c in cells:
        if c["technique"] == "none":
            scratch.setdefault(c["student"], []).append(c["records"][-1]["test_acc"])
    targets = metrics.student_targets(scratch, cfg.student_labels(), cfg.target)
    for c in cells:
        target = targets[c["student"]]
        c.update(metrics.cell_metrics(c["records"], target), target=target,
                 curve=[r["test_acc"] for r in c.pop("records")])
    return cells, missing, targets


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_report(out: Path, cfg: StudyConfig, techniques: list[TechniqueConfig],
                 meta: dict[str, Any]) -> Path:
    """Write every output file of the study into ``out``; returns the REPORT.md path."""
    cells, missing, targets = collect(out, cfg, techniques)
    groups = metrics.group_stats(cells, cfg.confidence)
    students = cfg.student_labels()
    labels = [t.label for t in techniques]
    _write_csv(out / "study.csv", cells, CELL_COLUMNS)
    if groups:
        columns = list(dict.fromkeys(k for g in groups for k in g))
        _write_csv(out / "summary.csv", groups, columns)
    notes = findings(groups, students, labels, cfg.confidence, meta["students"])
    (out / "study.json").write_text(json.dumps({
        "name": cfg.name, "command": meta.get("command"), "config": cfg.model_dump(mode="json"),
        "teacher": meta["teacher"],
        "students": meta["students"],
        "techniques": {t.label: [x.model_dump(mode="json", exclude_none=True) for x in t.losses]
                       for t in techniques},
        "targets": targets, "groups": groups, "cells": cells, "missing": missing,
        "findings": notes}, indent=2))
    figures = {}
    if cells:
        figures = {
            "accuracy": plots.accuracy_curves(cells, students, labels, targets,
                                              out / "plots" / "accuracy_curves.png"),
            "gain": plots.gain_heatmap(groups, students, labels, out / "plots" / "gain_heatmap.png"),
            "speedup": plots.speedup_bars(groups, students, labels, out / "plots" / "speedup.png"),
        }
    path = out / "REPORT.md"
    path.write_text(markdown_report(cfg, techniques, meta, groups, notes, missing, targets,
                                    {k: v.relative_to(out) for k, v in figures.items()},
                                    teacher_acc=_teacher_acc(cells)))
    return path


def _teacher_acc(cells: list[dict]) -> float | None:
    values = [c["teacher_acc"] for c in cells if c.get("teacher_acc") is not None]
    return values[0] if values else None

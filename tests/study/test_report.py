"""Report generation from run directories written by hand: files, table, findings,
negative-transfer wording, unfinished cells."""

import csv
import json

from edgedistill.config.study import StudyConfig
from edgedistill.study.grid import Cell, cell_dir
from edgedistill.study.report import write_report
from edgedistill.study.techniques import resolve_techniques
from tests.study.conftest import study_dict

CURVES = {  # (student, technique) -> final accuracy per seed; curves rise to it
    ("shallower", "none"): [0.80, 0.82, 0.81], ("shallower", "kd"): [0.81, 0.85, 0.83],
    ("shallower", "fitnet"): [0.78, 0.795, 0.785], ("narrow", "none"): [0.70, 0.72, 0.71],
    ("narrow", "kd"): [0.75, 0.76, 0.77], ("narrow", "fitnet"): [0.70, 0.73, 0.71],
}


def fake_cell(out, cell, final):
    run_dir = cell_dir(out, cell)
    run_dir.mkdir(parents=True)
    accs = [final - 0.2, final - 0.05, final]
    records = [{"epoch": i, "test_acc": a, "wall_seconds": 5.0 * (i + 1), "images_seen": 64 * (i + 1),
                "teacher_acc": 0.9, "agreement": 0.8} for i, a in enumerate(accs)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run_dir / "summary.json").write_text(json.dumps({"student": f"model-{cell.student}"}))


def test_report_files_table_and_findings(tmp_path):
    cfg = StudyConfig.model_validate(study_dict(
        "t.safetensors", students=[{"derive": "shallower"}, {"name": "resnet8", "label": "narrow"}],
        techniques=["none", "kd", "fitnet"], seeds=[0, 1, 2]))
    techniques = resolve_techniques(cfg)
    for (student, technique), finals in CURVES.items():
        for seed, final in enumerate(finals):
            if (student, technique, seed) != ("narrow", "fitnet", 2):  # one cell unfinished
                fake_cell(tmp_path, Cell(student, technique, seed), final)
    meta = {"teacher": {"source": "zoo:x", "model": "resnet14", "recorded": {
        "test_acc": 0.91, "epochs_trained": 3, "epochs_planned": 15, "date": "2026-11-23"}},
        "students": {"shallower": {"model": "resnet8", "params": 78042, "flops": 6.3e6},
                     "narrow": {"model": "resnet8", "params": 78042, "flops": 6.3e6}}}
    report = write_report(tmp_path, cfg, techniques, meta)

    with open(tmp_path / "study.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 17 and rows[0]["run_dir"] == "cells/shallower/none/seed0"
    with open(tmp_path / "summary.csv") as fh:
        groups = {(r["student"], r["technique"]): r for r in csv.DictReader(fh)}
    assert len(groups) == 6 and groups[("shallower", "fitnet")]["verdict"] == "negative transfer"
    assert groups[("narrow", "fitnet")]["seeds"] == "2"
    data = json.loads((tmp_path / "study.json").read_text())
    assert data["missing"] == ["narrow/fitnet/seed2 (new)"]
    assert data["targets"]["shallower"] == 0.99 * 0.81
    assert len(data["cells"][0]["curve"]) == 3
    for name in ("accuracy_curves", "gain_heatmap", "speedup"):
        assert (tmp_path / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"

    text = report.read_text()
    assert "| shallower | kd | 3 | 83.00 ± 2.00 |" in text
    assert "+2.00 [-0.48, +4.48]" in text  # the hand-computed interval, in points
    assert "**Negative transfer** (whole 95% interval below zero): fitnet on shallower" in text
    assert "best technique **kd**" in text
    assert ("Claim 1, higher final accuracy: 1 of 4 pairs gain with the whole 95% interval "
            "above zero, 1 lose with it below zero") in text
    assert "Claim 2, faster convergence:" in text and "| epochs saved [CI] |" in text
    assert "teacher zoo:x: 91.00% test accuracy, 3/15 planned epochs" in text
    assert "narrow/fitnet/seed2 (new)" in text and "](plots/gain_heatmap.png)" in text
    assert "Target: 0.99 x the mean final accuracy" in text and "shallower: 80.19%" in text

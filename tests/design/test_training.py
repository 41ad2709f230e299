"""Training after design: the halting report on a tiny run, and ``design --train`` end to end
(designed student distilled from the shipped teacher, scratch baseline, report)."""

import json

import pytest
from typer.testing import CliRunner

from edgedistill.config import TrainExperiment
from edgedistill.design.cli import design_app
from edgedistill.design.halting_report import run_halting_report
from tests.conftest import tiny_train_config


def test_halting_report_compares_full_and_halted_runs(tmp_path):
    cfg = TrainExperiment.model_validate(tiny_train_config(**{
        "model.kwargs": {"width": 0.25}, "data.limit_train": 256, "data.limit_test": 128,
        "train.epochs": 3, "halting": [{"kind": "plateau", "patience": 1, "min_delta": 1.0}]}))
    result = run_halting_report(cfg, tmp_path / "h", progress=False)
    full, halted = result["runs"]
    assert full["epochs"] == "3/3" and halted["epochs"] == "2/3"
    assert halted["images_seen"] == 2 * 256 and full["images_seen"] == 3 * 256
    assert result["saved_epochs"] == pytest.approx(1 / 3)
    assert result["saved_flops"] == pytest.approx(1 / 3)  # no teacher: FLOPs scale with images
    assert full["train_TFLOPs"] > 0 and "plateau" in halted["halted"]
    assert result["full_run_acc_at_halt_epoch"] == halted["final_test_acc"]  # same seed
    report = (tmp_path / "h" / "HALTING.md").read_text()
    assert "saved **33.3%** of training FLOPs" in report and "identical to" in report


def test_design_train_end_to_end(tmp_path):
    out = tmp_path / "d"
    result = CliRunner().invoke(design_app, [
        "design", "--teacher", "zoo:resnet20-fashion_mnist", "--storage", "100kB",
        "--speed", "5GFLOPS", "--max-time", "3ms", "--widths", "0.25,0.5", "--no-zoo",
        "--measure", "1", "--out", str(out), "--train",
        "--set", "data.limit_train=256", "--set", "data.limit_test=128",
        "--set", "data.batch_size=64", "--set", "train.epochs=2", "--set", "train.threads=1",
        "--set", "train.progress=false",
        "--set", "halting=[{kind: plateau, patience: 1, min_delta: 1.0}]"])
    assert result.exit_code == 0, result.output
    report = (out / "REPORT.md").read_text()
    assert "# Designed student resnet20-b3_1_1-w0.5" in report
    assert "| storage | 100 kB | 88.7 kB | yes |" in report
    assert "from scratch" in report and "Distillation minus scratch" in report
    assert "scratch at the distilled run's halting epoch" in report
    train = json.loads((out / "train.json").read_text())
    assert train["distilled"]["student"] == "resnet20-b3_1_1-w0.5"
    assert train["distilled"]["halted"]["epoch"] == 1 and "plateau" in report
    assert train["scratch"]["spec"]["blocks"] == [3, 1, 1]
    assert train["scratch"]["epochs_run"] == 2 and train["scratch"]["halted"] is None
    assert train["export"]["max_abs_diff_vs_torch"] < 1e-3
    assert (out / "distill" / "export" / "model.onnx").exists()

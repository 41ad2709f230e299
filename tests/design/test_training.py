"""Training after design: the halting report on a tiny run, and ``design --train`` end to end
(designed student distilled from the shipped teacher, scratch baseline, report)."""

import json

import pytest
from typer.testing import CliRunner

from edgedistill.config import TrainExperiment
from edgedistill.design.cli import design_app
from edgedistill.design.halting_report import replay_halting, run_halting_report
from tests.conftest import tiny_train_config


def halting_config(**over) -> TrainExperiment:
    return TrainExperiment.model_validate(tiny_train_config(**{
        "model.kwargs": {"width": 0.25}, "data.limit_train": 256, "data.limit_test": 128,
        "train.epochs": 3, "train.deterministic": True,
        "halting": [{"kind": "plateau", "patience": 1, "min_delta": 1.0}], **over}))


def test_halting_report_compares_full_and_halted_runs(tmp_path):
    cfg = halting_config()
    result = run_halting_report(cfg, tmp_path / "h", progress=False, share_prefix=False)
    full, halted = result["runs"]
    assert full["epochs"] == "3/3" and halted["epochs"] == "2/3"
    assert halted["images_seen"] == 2 * 256 and full["images_seen"] == 3 * 256
    assert result["saved_epochs"] == pytest.approx(1 / 3)
    assert result["saved_flops"] == pytest.approx(1 / 3)  # no teacher: FLOPs scale with images
    assert full["train_TFLOPs"] > 0 and "plateau" in halted["halted"]
    assert result["full_run_acc_at_halt_epoch"] == halted["final_test_acc"]  # same seed
    report = (tmp_path / "h" / "HALTING.md").read_text()
    assert "saved **33.3%** of training FLOPs" in report and "identical to" in report
    assert "trained from scratch" in report and not result["shared_prefix"]


def metrics(run_dir):
    timing = {"epoch_seconds", "images_per_s", "wall_seconds"}
    return [{k: v for k, v in json.loads(x).items() if k not in timing}
            for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def weights(run_dir):
    from edgedistill.train.checkpoint import load_weights

    return load_weights(run_dir / "model.safetensors")[0]


def test_shared_prefix_branches_equal_runs_trained_alone(tmp_path):
    """The full run branched from the halt, and an anneal branched from the same halt, end
    exactly like the same configs trained from the first step."""
    from edgedistill import api

    cfg = halting_config()
    result = run_halting_report(cfg, tmp_path / "h", progress=False, anneals=[0, 1])
    assert result["shared_prefix"] and [v["anneal"] for v in result["variants"]] == [0, 1]
    assert [r["epochs"] for r in result["runs"]] == ["3/3", "2/3", "3/3"]
    assert result["runs"][2]["run"] == "halted, anneal 1"
    assert (tmp_path / "h" / "halted" / "checkpoints" / "halt.pt").exists()
    alone_full = tmp_path / "alone_full"
    api.train(cfg.model_copy(update={"halting": []}), alone_full, progress=False)
    alone_anneal = tmp_path / "alone_anneal"
    summary = api.train(cfg.model_copy(update={"halting_anneal_epochs": 1}), alone_anneal,
                        progress=False)
    for branched, alone in ((tmp_path / "h" / "full", alone_full),
                            (tmp_path / "h" / "halted-anneal1", alone_anneal)):
        assert metrics(branched) == metrics(alone)
        for name, tensor in weights(alone).items():
            assert weights(branched)[name].equal(tensor), name
    branched = json.loads((tmp_path / "h" / "halted-anneal1" / "summary.json").read_text())
    assert branched["halted"]["epoch"] == summary["halted"]["epoch"] == 1
    assert branched["halted"]["annealed_epochs"] == 1
    report = (tmp_path / "h" / "HALTING.md").read_text()
    assert "- anneal 1: saved 0.0% of training FLOPs" in report
    assert "not trained twice" in report


def test_replayed_rules_equal_a_live_halted_run(tmp_path):
    """Rules tried on a finished full run (epoch checkpoints kept) give exactly the run
    that training with them would have given; only the anneal is trained."""
    from edgedistill import api
    from edgedistill.errors import UsageError
    from edgedistill.train.halting import parse_rules

    cfg = halting_config(**{"train.epochs": 4, "halting_anneal_epochs": 1})
    rules = parse_rules([{"kind": "plateau", "patience": 1, "min_delta": 1.0}])
    full_cfg = cfg.model_copy(update={"halting": [], "train": cfg.train.model_copy(
        update={"keep_epoch_checkpoints": True})})
    api.train(full_cfg, tmp_path / "full", progress=False)
    assert sorted(p.name for p in (tmp_path / "full" / "checkpoints").glob("epoch*.pt")) == [
        "epoch000.pt", "epoch001.pt", "epoch002.pt", "epoch003.pt"]
    live = api.train(cfg, tmp_path / "live", progress=False)
    replayed = replay_halting(tmp_path / "full", cfg, rules, 1, tmp_path / "replay")
    assert replayed["halted"]["epoch"] == live["halted"]["epoch"] == 1
    assert replayed["epochs_run"] == live["epochs_run"] == 3
    assert metrics(tmp_path / "replay") == metrics(tmp_path / "live")
    for name, tensor in weights(tmp_path / "live").items():
        assert weights(tmp_path / "replay")[name].equal(tensor), name
    never = parse_rules([{"kind": "plateau", "patience": 10}])  # longer than the run
    assert replay_halting(tmp_path / "full", cfg, never, 1, tmp_path / "never") is None
    (tmp_path / "full" / "checkpoints" / "epoch001.pt").unlink()
    with pytest.raises(UsageError, match="keep_epoch_checkpoints"):
        replay_halting(tmp_path / "full", cfg, rules, 1, tmp_path / "missing")


def test_resuming_a_halted_run_does_not_train_past_the_halt(tmp_path):
    from edgedistill import api

    cfg = halting_config()
    first = api.train(cfg, tmp_path / "r", progress=False)
    again = api.train(cfg, tmp_path / "r", resume=True, progress=False)
    assert first["epochs_run"] == again["epochs_run"] == 2
    assert again["halted"]["epoch"] == first["halted"]["epoch"]


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

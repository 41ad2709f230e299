"""A held-out validation split in a distillation run: recorded per epoch with the teacher's
own validation accuracy, and what the halting rules read."""

import json
import sys
from pathlib import Path

import pytest
import yaml

from edgedistill.config import DistillExperiment
from edgedistill.distill.run import run_distill
from tests.conftest import timed_cli
from tests.distill.conftest import distill_config


def test_distill_records_validation_metrics_and_halts_on_them(tiny_teacher, tmp_path):
    cfg = DistillExperiment.model_validate(distill_config(tiny_teacher, **{
        "data.val_split": 128, "train.epochs": 3,
        "halting": [{"kind": "plateau", "patience": 1, "min_delta": 1.0}]}))
    summary = run_distill(cfg, tmp_path / "v", progress=False)
    records = [json.loads(x) for x in (tmp_path / "v" / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        assert 0.0 <= r["val_acc"] <= 1.0 and r["val_loss"] > 0
        assert 0.0 <= r["val_agreement"] <= 1.0
        assert r["teacher_val_acc"] == summary["teacher_val_acc"]
    assert summary["final_val_acc"] == records[-1]["val_acc"]
    assert "plateau: validation accuracy" in summary["halted"]["reason"]
    assert summary["epochs_run"] == 2


EDGEDISTILL = str(Path(sys.executable).parent / "edgedistill")
PROBLEM_CONFIG = {  # everything a run would read first points nowhere
    "data": {"dataset": "fashion_mnist", "root": "/nonexistent/fashion_mnist"},
    "teacher": {"source": "zoo:resnet20-fashion_mnist"},
    "student": {"derive": "shallower"},
}


def cli_refuses(tmp_path, over: dict) -> tuple[str, float]:
    """stderr and CPU seconds of ``edgedistill distill`` on a config with ``over`` merged
    in; it must exit 2 without a traceback and without starting the run. CPU time, not
    wall time, is what the command costs: on the shared 2-core machine other jobs add
    waiting for a core (the wall time is bounded loosely, against a hang)."""
    config = tmp_path / "bad.yaml"
    raw = {**PROBLEM_CONFIG, **over, "teacher": {**PROBLEM_CONFIG["teacher"],
                                                 **over.get("teacher", {})}}
    config.write_text(yaml.safe_dump(raw))
    run = timed_cli("distill", str(config), "--out", str(tmp_path / "r"),
                    command=[EDGEDISTILL], timeout=60, cwd=tmp_path)
    done, wall, cpu = run.result, run.wall, run.cpu
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 5
    assert not (tmp_path / "r").exists()
    assert wall < 10.0, f"{wall:.1f} s wall"
    return done.stderr, cpu


@pytest.mark.parametrize("pool, message", [
    ({"replicas": [{"backend": "torch", "num_cpu": 1}]},
     "unknown key 'teacher.pool.replicas.0.num_cpu'; allowed keys here: backend, count, "
     "num_cpus, num_gpus, resources"),
    ({"autoscale": {"max_replica": 3}},
     "unknown key 'teacher.pool.autoscale.max_replica'; allowed keys here: cooldown_s, "
     "grow_wait_fraction, interval_s, max_replicas, min_replicas, replica, "
     "target_utilization"),
    ({"replicas": [{"backend": "tensorrt"}]},
     "teacher.pool.replicas.0.backend: Input should be 'torch', 'onnx' or 'onnx-int8'"),
    ({"deadline_s": float("nan")}, "teacher.pool.deadline_s: Input should be a finite number"),
    ({"autoscale": {"replica": {"num_gpus": float("inf")}}},
     "teacher.pool.autoscale.replica.num_gpus: Input should be a finite number"),
], ids=["replica-key", "autoscale-key", "backend", "nan", "inf"])
def test_a_wrong_pool_setting_exits_2_at_load_in_under_2_s(tmp_path, pool, message):
    stderr, seconds = cli_refuses(tmp_path, {"teacher": {"mode": "pool", "pool": pool}})
    assert message in stderr
    assert seconds < 2.0, f"{seconds:.2f} CPU s"


def test_a_misspelt_halting_field_exits_2_at_load_in_under_2_s(tmp_path):
    stderr, seconds = cli_refuses(tmp_path, {"halting": [{"kind": "teacher_gap",
                                                          "epsilon": 0.01},
                                                         {"kind": "plateau", "patiense": 3}]})
    assert ("unknown halting[1] key 'patiense' for halting rule 'plateau'; allowed: kind, "
            "min_delta, min_epochs, patience, statistic") in stderr
    assert seconds < 2.0, f"{seconds:.2f} CPU s"


def test_an_unknown_teacher_mode_names_the_registered_sources(tmp_path):
    stderr, _ = cli_refuses(tmp_path, {"teacher": {"mode": "remote"}})
    assert "unknown teacher source 'remote'; choose one of: cache, online, pool" in stderr

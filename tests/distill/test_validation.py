"""A held-out validation split in a distillation run: recorded per epoch with the teacher's
own validation accuracy, and what the halting rules read."""

import json

from edgedistill.config import DistillExperiment
from edgedistill.distill.run import run_distill
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

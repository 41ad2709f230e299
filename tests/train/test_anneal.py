"""Halting with an anneal: after a rule fires, the learning rate decays to the schedule's
floor over ``halting_anneal_epochs`` more epochs, then training stops; the summary says
where the rule fired and how long the anneal ran; a crash mid-anneal resumes it."""

import json

import pytest

from edgedistill import api
from edgedistill.config import TrainExperiment
from tests.conftest import tiny_train_config

NEVER_IMPROVES = [{"kind": "plateau", "patience": 1, "min_delta": 1.0}]


def config(**over) -> TrainExperiment:
    return TrainExperiment.model_validate(tiny_train_config(**{
        "model.kwargs": {"width": 0.25}, "data.limit_train": 256, "data.limit_test": 128,
        "train.epochs": 6, "train.checkpoint_every_steps": 1, "train.schedule": {
            "name": "constant"}, "halting": NEVER_IMPROVES, **over}))


def records(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_anneal_runs_k_more_epochs_with_decaying_lr(tmp_path):
    summary = api.train(config(halting_anneal_epochs=2), tmp_path / "a", progress=False)
    # the rule fires after epoch index 1 (the first with a "before" to compare), then 2 more
    assert summary["epochs_run"] == 4 and summary["epochs_planned"] == 6
    halted = summary["halted"]
    assert halted["epoch"] == 1 and halted["annealed_epochs"] == 2
    assert "plateau" in halted["reason"]
    assert halted["metrics_after_anneal"]["epoch"] == 3
    lrs = [r["lr"] for r in records(tmp_path / "a")]  # lr of each epoch's last step
    assert lrs[0] == lrs[1] == pytest.approx(0.05)  # constant schedule until the halt
    assert 0.0 < lrs[2] < 0.05 and lrs[3] < lrs[2]
    assert lrs[3] < 0.05 * 0.05  # last step of the anneal: near the floor (0 here)


def test_no_anneal_stops_at_once_and_anneal_never_exceeds_the_schedule(tmp_path):
    plain = api.train(config(), tmp_path / "p", progress=False)
    assert plain["epochs_run"] == 2 and "annealed_epochs" not in plain["halted"]
    capped = api.train(config(halting_anneal_epochs=10), tmp_path / "c", progress=False)
    assert capped["epochs_run"] == 6 and capped["halted"]["annealed_epochs"] == 4


def test_resume_mid_anneal_ends_like_an_uninterrupted_run(tmp_path, monkeypatch):
    """A crash inside the anneal (injected at the third evaluation; test_resume.py kills a
    real process) resumes with the anneal's state from the checkpoint."""
    from edgedistill.train import trainer as trainer_mod

    cfg = config(halting_anneal_epochs=2, **{"train.deterministic": True})
    whole = api.train(cfg, tmp_path / "whole", progress=False)
    real_evaluate, calls = trainer_mod.evaluate, []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected crash inside the anneal")
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "evaluate", crash_on_third)
    with pytest.raises(RuntimeError, match="injected"):
        api.train(cfg, tmp_path / "cut", progress=False)
    monkeypatch.setattr(trainer_mod, "evaluate", real_evaluate)
    assert not (tmp_path / "cut" / "summary.json").exists()
    resumed = api.train(cfg, tmp_path / "cut", resume=True, progress=False)
    assert resumed["epochs_run"] == whole["epochs_run"] == 4
    assert resumed["halted"]["annealed_epochs"] == 2
    drop = {"epoch_seconds", "images_per_s", "wall_seconds"}
    strip = [{k: v for k, v in r.items() if k not in drop} for r in records(tmp_path / "cut")]
    assert strip == [{k: v for k, v in r.items() if k not in drop}
                     for r in records(tmp_path / "whole")]

"""Run loggers: a real short run with ``loggers: [tensorboard, mlflow]`` writes real
TensorBoard event files and a real MLflow run (a local file store), read back here with
TensorBoard's own EventAccumulator and the MLflow client, equal to metrics.jsonl; a
wrong logger or logger setting is refused at load with the allowed keys."""

import json

import pytest

from edgedistill import api
from edgedistill.config import TrainExperiment, validate
from edgedistill.errors import UsageError
from tests.conftest import tiny_train_config


def config(**over) -> TrainExperiment:
    return TrainExperiment.model_validate(tiny_train_config(**{
        "model.kwargs": {"width": 0.25}, "data.limit_train": 256, "data.limit_test": 128,
        **over}))


def records(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_and_mlflow_receive_every_epoch_record(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for this opt-in
    uri = (tmp_path / "mlruns").as_uri()
    cfg = config(loggers=["tensorboard", {"name": "mlflow", "tracking_uri": uri,
                                          "experiment": "loggers-test"}])
    summary = api.train(cfg, tmp_path / "run", progress=False)
    want = records(tmp_path / "run")
    assert len(want) == 2 and (tmp_path / "run" / "plots" / "curves.png").exists()

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert {"test_acc", "train_loss", "lr", "loss/ce"} <= set(events.Tags()["scalars"])
    for key in ("test_acc", "train_loss", "loss/ce"):
        got = [(e.step, e.value) for e in events.Scalars(key)]
        assert got == [(r["epoch"] + 1, pytest.approx(r[key], rel=1e-6)) for r in want], key

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("loggers-test").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["train.epochs"] == "2" and run.data.params["model.name"] == "resnet8"
    history = client.get_metric_history(run.info.run_id, "test_acc")
    assert [(m.step, m.value) for m in history] == [
        (r["epoch"] + 1, pytest.approx(r["test_acc"])) for r in want]
    assert run.data.metrics["final_test_acc"] == pytest.approx(summary["final_test_acc"])
    # resuming continues that MLflow run (its id is in the checkpoint), never a second one
    api.train(cfg, tmp_path / "run", resume=True, progress=False)
    (again,) = client.search_runs([run.info.experiment_id])
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"


def test_mlflow_file_store_without_its_opt_in_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    cfg = config(**{"train.epochs": 1, "loggers": [
        {"name": "mlflow", "tracking_uri": (tmp_path / "mlruns").as_uri()}]})
    with pytest.raises(UsageError, match="loggers: mlflow .*set MLFLOW_ALLOW_FILE_STORE=true"):
        api.train(cfg, tmp_path / "run", progress=False)


def test_loggers_are_checked_at_load():
    raw = tiny_train_config()
    cfg = validate({**raw, "loggers": ["tensorboard"]}, TrainExperiment)
    assert [type(x).__name__ for x in cfg.loggers] == ["TensorBoardSettings"]
    with pytest.raises(UsageError, match="unknown run logger 'tensorbord'; choose one of: "
                                         "jsonl, mlflow, plots, tensorboard"):
        validate({**raw, "loggers": ["tensorbord"]}, TrainExperiment)
    with pytest.raises(UsageError, match="unknown loggers\\[1\\] key 'tracking_url' for run "
                                         "logger 'mlflow'; allowed: experiment, name, run_name, "
                                         "tracking_uri"):
        validate({**raw, "loggers": ["tensorboard", {"name": "mlflow", "tracking_url": "x"}]},
                 TrainExperiment)


def test_a_logger_whose_package_is_missing_names_the_extra(monkeypatch):
    """The real check finds tensorboard installed (test above); here its absence is
    injected."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(UsageError, match=r"pip install 'edgedistill\[tensorboard\]'"):
        validate({**tiny_train_config(), "loggers": ["tensorboard"]}, TrainExperiment)

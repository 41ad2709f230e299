"""MLflow: the resolved config as parameters, every numeric field of each epoch record as
a metric (step = epochs done), the summary's accuracies at the end, the run marked
FINISHED or FAILED. A resumed run continues the same MLflow run (its id is kept in the
checkpoint). Needs the ``mlflow`` extra (``mlflow-skinny``: the tracking client)."""

from __future__ import annotations

import importlib.util
import time
from typing import Any, Literal

from pydantic import Field, model_validator

from edgedistill.config import LoggerConfig
from edgedistill.errors import UsageError
from edgedistill.train.loggers import LOGGERS, RunLogger
from edgedistill.train.loggers.tensorboard_events import numeric

PARAMS_PER_CALL = 100  # MLflow's limit for one log_batch
SUMMARY_METRICS = ("final_test_acc", "best_test_acc", "final_val_acc", "wall_seconds")


class MLflowSettings(LoggerConfig):
    name: Literal["mlflow"] = "mlflow"
    tracking_uri: str | None = Field(
        None, description="e.g. http://HOST:5000 or sqlite:///mlflow.db; default: MLflow's "
        "own (MLFLOW_TRACKING_URI, else ./mlruns)")
    experiment: str | None = Field(None, description="default: the config's name")
    run_name: str | None = Field(None, description="default: the run directory's name")

    @model_validator(mode="after")
    def _installed(self) -> MLflowSettings:
        if importlib.util.find_spec("mlflow") is None:
            raise ValueError("logger mlflow needs the mlflow package: "
                             "pip install 'edgedistill[mlflow]'")
        return self


def flatten(node: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(node, dict) and node:
        out: dict[str, str] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: str(node)[:6000]}


@LOGGERS.register("mlflow", settings=MLflowSettings)
class MLflowLogger(RunLogger):
    """MLflow tracking: parameters, per-epoch metrics, final status."""

    run_id: str | None = None
    client = None
    done = False

    def state_dict(self) -> dict[str, Any]:
        return {"mlflow_run_id": self.run_id} if self.run_id else {}

    def load_state_dict(self, trainer, state: dict[str, Any]) -> None:
        self.run_id = state.get("mlflow_run_id")

    def on_train_start(self, trainer) -> None:
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        s = self.settings
        try:
            self.client = MlflowClient(s.tracking_uri)
            if self.run_id is None:
                name = s.experiment or trainer.cfg.name
                found = self.client.get_experiment_by_name(name)
                exp = found.experiment_id if found else self.client.create_experiment(name)
                run = self.client.create_run(exp, run_name=s.run_name or trainer.run_dir.name)
                self.run_id = run.info.run_id
                params = [Param(k, v) for k, v in
                          flatten(trainer.cfg.model_dump(mode="json")).items()]
                for i in range(0, len(params), PARAMS_PER_CALL):
                    self.client.log_batch(self.run_id, params=params[i:i + PARAMS_PER_CALL])
        except MlflowException as err:
            first = str(err.message).split(". ")[0]
            raise UsageError(f"loggers: mlflow (tracking_uri {s.tracking_uri or 'default'}): "
                             f"{first}; for a local file store set MLFLOW_ALLOW_FILE_STORE=true"
                             ) from None

    def _log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step)
                                                    for k, v in values.items()])

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        self._log(numeric(record), record["epoch"] + 1)

    def on_train_end(self, trainer, summary: dict[str, Any]) -> None:
        final = {k: float(summary[k]) for k in SUMMARY_METRICS
                 if isinstance(summary.get(k), (int, float))}
        self._log(final, summary["epochs_run"])
        self.client.set_terminated(self.run_id, "FINISHED")
        self.done = True

    def close(self) -> None:
        if self.client is not None and self.run_id and not self.done:
            self.client.set_terminated(self.run_id, "FAILED")

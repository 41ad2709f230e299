"""``plots/curves.png``: loss and accuracy per epoch, drawn when the run ends."""

from __future__ import annotations

from typing import Any

from edgedistill.config import LoggerConfig
from edgedistill.train.loggers import LOGGERS, RunLogger


@LOGGERS.register("plots", settings=LoggerConfig)
class TrainingCurves(RunLogger):
    """plots/curves.png in the run directory (always drawn)."""

    def on_train_start(self, trainer) -> None:
        (trainer.run_dir / "plots").mkdir(parents=True, exist_ok=True)

    def on_train_end(self, trainer, summary: dict[str, Any]) -> None:
        from edgedistill.report.plots import plot_training_curves

        if trainer.records:
            plot_training_curves(trainer.records, trainer.run_dir / "plots")

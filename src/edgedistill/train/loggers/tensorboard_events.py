"""TensorBoard: every numeric field of each epoch record as a scalar, step = epochs done
(``tensorboard --logdir RUN_DIR/tensorboard``). Needs the ``tensorboard`` extra."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from edgedistill.config import LoggerConfig
from edgedistill.train.loggers import LOGGERS, RunLogger


def numeric(record: dict[str, Any]) -> dict[str, float]:
    """The fields of a record a tracker can plot (numbers, not flags), ``epoch`` aside."""
    return {k: float(v) for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch"}


class TensorBoardSettings(LoggerConfig):
    name: Literal["tensorboard"] = "tensorboard"
    dir: str | None = Field(None, description="event folder; default RUN_DIR/tensorboard")

    @model_validator(mode="after")
    def _installed(self) -> TensorBoardSettings:
        if importlib.util.find_spec("tensorboard") is None:
            raise ValueError("logger tensorboard needs the tensorboard package: "
                             "pip install 'edgedistill[tensorboard]'")
        return self


@LOGGERS.register("tensorboard", settings=TensorBoardSettings)
class TensorBoardLogger(RunLogger):
    """TensorBoard event files of every epoch's metrics."""

    def on_train_start(self, trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        folder = Path(self.settings.dir) if self.settings.dir else trainer.run_dir / "tensorboard"
        # a resumed run drops the events of the epochs it trains again
        self.writer = SummaryWriter(str(folder), purge_step=trainer.epoch + 1 if trainer.epoch
                                    else None)

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        for key, value in numeric(record).items():
            self.writer.add_scalar(key, value, record["epoch"] + 1)
        self.writer.flush()

    def close(self) -> None:
        if getattr(self, "writer", None) is not None:
            self.writer.close()
            self.writer = None

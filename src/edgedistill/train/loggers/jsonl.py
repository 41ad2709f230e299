"""``metrics.jsonl``: one JSON object per epoch, the record every report reads."""

from __future__ import annotations

import json
from typing import Any

from edgedistill.config import LoggerConfig
from edgedistill.train.loggers import LOGGERS, RunLogger


@LOGGERS.register("jsonl", settings=LoggerConfig)
class MetricsFile(RunLogger):
    """metrics.jsonl in the run directory (always written)."""

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        with open(trainer.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

"""Run loggers: where a run's epoch records and summary go besides the Trainer's own
checkpoints. ``metrics.jsonl`` and ``plots/`` are always written; ``loggers:`` in a
config adds others by name (``[tensorboard]``, ``[{name: mlflow, tracking_uri: ...}]``).

A logger is a :class:`RunLogger` registered in ``LOGGERS`` with its settings model (a
``LoggerConfig`` subclass), one file each; a plugin adds one the same way. The modules
here import nothing heavy: TensorBoard and MLflow load when a run starts, and a logger
whose package is missing is refused at config load with the extra to install.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from edgedistill.config import LoggerConfig
from edgedistill.registry import Registry
from edgedistill.train.callbacks import Callback

LOGGERS = Registry("run logger")
ALWAYS = ("jsonl", "plots")


class RunLogger(Callback):
    """A callback that sees each epoch's record after every other callback added to it
    (loggers come last), and the summary; it runs on rank 0 only."""

    def __init__(self, settings: LoggerConfig):
        self.settings = settings


def parse_loggers(raw: Any) -> Any:
    """``loggers:`` entries (a name, or a mapping with ``name``) as their settings models;
    a ``ValueError`` names the entry and the logger's allowed keys."""
    if not isinstance(raw, list):
        return raw
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            item = {"name": item}
        if isinstance(item, BaseModel) or not isinstance(item, dict):
            out.append(item)
            continue
        if "name" not in item:
            raise ValueError(f"loggers[{i}] needs a name: one of {', '.join(LOGGERS.names())}")
        out.append(LOGGERS.validate_settings(str(item["name"]), item, f"loggers[{i}]"))
    return out


def run_loggers(configs: list[LoggerConfig]) -> list[RunLogger]:
    """The loggers of a run: ``metrics.jsonl`` and plots, then the configured ones."""
    chosen = {name: LoggerConfig(name=name) for name in ALWAYS}
    chosen.update({c.name: c for c in configs})
    return [LOGGERS.get(name)(settings) for name, settings in chosen.items()]


from edgedistill.train.loggers import (  # noqa: E402,F401  (each registers itself)
    jsonl,
    mlflow_tracking,
    plots,
    tensorboard_events,
)

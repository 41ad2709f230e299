"""Training: the generic Trainer, checkpoints, schedules, callbacks, early halting, run
loggers.

The names below load on first use, so validating a config (which reads the halting
rules and loggers registered under ``train/``) does not import torch.
"""

from importlib import import_module

from edgedistill.callable_package import make_callable

_EXPORTS = {
    "Callback": "callbacks", "PrintProgress": "callbacks",
    "load_checkpoint": "checkpoint", "load_weights": "checkpoint",
    "save_checkpoint": "checkpoint", "save_weights": "checkpoint",
    "autocast": "device", "resolve_device": "device",
    "HaltingCallback": "halting", "check_rule": "halting", "should_halt": "halting",
    "lr_at": "schedule", "Supervised": "tasks", "Trainer": "trainer", "evaluate": "trainer",
}
__all__ = sorted(_EXPORTS)

make_callable(__name__, "train")  # edgedistill.train(...) is the Python API's train


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"edgedistill.train.{_EXPORTS[name]}"), name)

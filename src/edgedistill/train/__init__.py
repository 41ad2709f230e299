"""Training: the generic Trainer, checkpoints, schedules, callbacks, early halting."""

from edgedistill.train.callbacks import Callback, PrintProgress
from edgedistill.train.checkpoint import (
                                          load_checkpoint,
                                          load_weights,
                                          save_checkpoint,
                                          save_weights,
)
from edgedistill.train.device import autocast, resolve_device
from edgedistill.train.halting import HaltingCallback, check_rule, should_halt
from edgedistill.train.schedule import lr_at
from edgedistill.train.tasks import Supervised
from edgedistill.train.trainer import Trainer, evaluate

__all__ = ["Callback", "HaltingCallback", "PrintProgress", "Supervised", "Trainer", "autocast",
           "check_rule", "evaluate", "load_checkpoint", "load_weights", "lr_at",
           "resolve_device", "save_checkpoint", "save_weights", "should_halt"]

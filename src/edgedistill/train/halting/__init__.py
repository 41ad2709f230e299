"""Early halting: stop training when more epochs stop paying.

Rules (``halting:`` in any config, combined with ``halting_mode: any|all``) are registry
entries, one settings model per kind (``rules.py``); ``HaltingCallback`` runs the state
machine around the Trainer (halt, anneal, ``halt.pt``; ``callback.py``); ``replay.py``
tries other rules on a finished run. Accuracy and agreement are read on the validation
set when the run holds one out (``data.val_split``), so that the test set never steers
training; otherwise on the test set, as the reason string then says.

The rules load with the config (no torch); the callback and the replay on first use.
"""

from importlib import import_module

from edgedistill.config import HaltingRule
from edgedistill.train.halting.rules import (
    HALTING,
    Reading,
    check_rule,
    describe,
    first_halt,
    halting_rule,
    parse_rules,
    should_halt,
)

_LAZY = {"HaltingCallback": "callback", "halting_callbacks": "callback",
         "halt_checkpoint": "callback", "branch": "replay", "prepare_replay": "replay"}

__all__ = ["HALTING", "HaltingRule", "Reading", "check_rule", "describe", "first_halt",
           "halting_rule", "parse_rules", "should_halt", *sorted(_LAZY)]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"edgedistill.train.halting.{_LAZY[name]}"), name)

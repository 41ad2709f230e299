"""Early halting: stop training when more epochs stop paying.

Criteria (``halting:`` in any config, combined with ``halting_mode: any|all``):

* ``plateau``: accuracy has not improved by ``min_delta`` for ``patience`` epochs
  (``statistic: max``: the best of the last ``patience`` epochs against the best of all
  before; ``mean``: their mean against the mean of the ``patience`` epochs before them,
  so that one lucky epoch at a high learning rate does not set a bar the noisy epochs
  after it must beat).
* ``agreement``: the student's predictions agree with the teacher's on at
  least ``threshold`` of samples.
* ``teacher_gap``: teacher accuracy minus student accuracy is below ``epsilon``.
* ``loss_improvement``: the relative improvement of the distillation loss (the sum of
  terms other than ``ce``; the total when there are none) over the last ``window``
  epochs is below ``delta``.

Accuracy and agreement are read on the validation set when the run holds one out
(``data.val_split``), so that the test set never steers training; otherwise on the test
set, as the reason string then says.

Each rule is a pure function of the metric history so it can be tested on synthetic
sequences; ``HaltingCallback`` applies them and the Trainer writes the reason, epoch
and metric values into ``summary.json``.
"""

from __future__ import annotations

from typing import Any

from edgedistill.config import HaltingRule, RunBase
from edgedistill.errors import UsageError
from edgedistill.train.callbacks import Callback

TEACHER_RULES = {"agreement", "teacher_gap"}


def distill_loss(record: dict[str, Any]) -> float:
    terms = {k: v for k, v in record.items() if k.startswith("loss/") and k != "loss/ce"}
    return sum(terms.values()) if terms else record["train_loss"]


def split_read(record: dict[str, Any]) -> tuple[str, str]:
    """(key prefix, name) of the split halting reads: validation if held out, else test."""
    return ("val_", "validation") if "val_acc" in record else ("", "test")


def check_rule(rule: HaltingRule, history: list[dict[str, Any]]) -> str | None:
    """The reason to halt after the last record of ``history``, or None."""
    if len(history) < max(rule.min_epochs, 1):
        return None
    last = history[-1]
    prefix, split = split_read(last)
    acc = "val_acc" if prefix else "test_acc"
    if rule.kind == "plateau":
        if len(history) <= rule.patience:
            return None
        p = rule.patience
        if rule.statistic == "mean":
            if len(history) < 2 * p:
                return None
            recent = sum(r[acc] for r in history[-p:]) / p
            before = sum(r[acc] for r in history[-2 * p:-p]) / p
            what = f"mean {split} accuracy {recent:.4f} of the last {p} epochs"
        else:
            before = max(r[acc] for r in history[:-p])
            recent = max(r[acc] for r in history[-p:])
            what = f"{split} accuracy {recent:.4f} in the last {p} epochs"
        if recent < before + rule.min_delta:
            return f"plateau: {what} did not beat {before:.4f} by {rule.min_delta}"
    elif rule.kind == "agreement":
        agreement = last.get(f"{prefix}agreement", 0.0)
        if agreement >= rule.threshold:
            return f"agreement: student agrees with teacher on {agreement:.4f} >= " \
                   f"{rule.threshold} of the {split} set"
    elif rule.kind == "teacher_gap":
        gap = last[f"teacher_{prefix}acc"] - last[acc]
        if gap < rule.epsilon:
            return f"teacher_gap: {gap:.4f} below {rule.epsilon} on the {split} set"
    elif rule.kind == "loss_improvement":
        if len(history) <= rule.window:
            return None
        before = distill_loss(history[-rule.window - 1])
        now = distill_loss(last)
        rel = (before - now) / max(abs(before), 1e-12)
        if rel < rule.delta:
            return (f"loss_improvement: distillation loss improved {rel:.4f} over "
                    f"{rule.window} epochs, below {rule.delta}")
    return None


def should_halt(rules: list[HaltingRule], history: list[dict[str, Any]],
                mode: str = "any") -> str | None:
    reasons = [check_rule(rule, history) for rule in rules]
    fired = [r for r in reasons if r]
    if not fired or (mode == "all" and len(fired) < len(rules)):
        return None
    return "; ".join(fired)


class HaltingCallback(Callback):
    def __init__(self, rules: list[HaltingRule], mode: str = "any"):
        self.rules = rules
        self.mode = mode

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> str | None:
        return should_halt(self.rules, [*trainer.records, record], self.mode)


def halting_callbacks(cfg: RunBase, has_teacher: bool = False) -> list[Callback]:
    if not cfg.halting:
        return []
    needs = {r.kind for r in cfg.halting} & TEACHER_RULES
    if needs and not has_teacher:
        raise UsageError(f"halting rules {sorted(needs)} need a teacher; use them with "
                         "`edgedistill distill`, or use plateau/loss_improvement")
    return [HaltingCallback(cfg.halting, cfg.halting_mode)]

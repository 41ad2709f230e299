"""The halting rules: one registry entry per kind, each its own settings model.

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

A rule is a pure function of the metric history (``check``), so it is tested on
synthetic sequences and replayed on a finished run's records. A plugin adds a kind with
``@halting_rule("my_kind")`` on a :class:`HaltingRule` subclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal

from pydantic import BaseModel, Field

from edgedistill.config import HaltingRule
from edgedistill.registry import Registry

HALTING = Registry("halting rule")


def halting_rule(kind: str) -> Callable[[type[HaltingRule]], type[HaltingRule]]:
    """Register a :class:`HaltingRule` subclass as kind ``kind``; the class is its own
    settings model, so ``halting: [{kind: ..., ...}]`` entries are checked against it."""

    def add(cls: type[HaltingRule]) -> type[HaltingRule]:
        return HALTING.register(kind, settings=cls)(cls)

    return add


@dataclass(frozen=True)
class Reading:
    """Which split a rule reads: validation when the run holds one out, else test."""

    prefix: str  # "val_" or ""
    split: str  # "validation" or "test"

    @property
    def acc(self) -> str:
        return f"{self.prefix}acc" if self.prefix else "test_acc"


def reading(record: dict[str, Any]) -> Reading:
    return Reading("val_", "validation") if "val_acc" in record else Reading("", "test")


def parse_rules(raw: Any) -> Any:
    """``halting:`` entries as their kinds' settings models (already built rules pass
    through); a ``ValueError`` names the entry, the kind and its allowed keys."""
    if not isinstance(raw, list):
        return raw  # the field's own validation names the problem
    rules = []
    for i, item in enumerate(raw):
        if isinstance(item, BaseModel) or not isinstance(item, dict):
            rules.append(item)
            continue
        if "kind" not in item:
            raise ValueError(f"halting[{i}] needs a kind: one of {', '.join(HALTING.names())}")
        rules.append(HALTING.validate_settings(str(item["kind"]), item, f"halting[{i}]"))
    return rules


def check_rule(rule: HaltingRule, history: list[dict[str, Any]]) -> str | None:
    """The reason to halt after the last record of ``history``, or None."""
    if len(history) < max(rule.min_epochs, 1):
        return None
    return rule.check(history, reading(history[-1]))


def should_halt(rules: list[HaltingRule], history: list[dict[str, Any]],
                mode: str = "any") -> str | None:
    reasons = [check_rule(rule, history) for rule in rules]
    fired = [r for r in reasons if r]
    if not fired or (mode == "all" and len(fired) < len(rules)):
        return None
    return "; ".join(fired)


def first_halt(rules: list[HaltingRule], records: list[dict[str, Any]],
               mode: str = "any") -> tuple[int, str] | None:
    """(epoch index, reason) where ``rules`` first fire on a run's records, else None: the
    same history a live run would have shown them."""
    for epoch in range(len(records)):
        reason = should_halt(rules, records[:epoch + 1], mode)
        if reason:
            return epoch, reason
    return None


def describe(rule: HaltingRule) -> str:
    """``plateau(patience=3, min_delta=0.002)``: the kind and the settings it was given."""
    shown = [f"{k}={getattr(rule, k)}" for k in getattr(rule, "shown", ())]
    return f"{rule.kind}({', '.join(shown)})"


def distill_loss(record: dict[str, Any]) -> float:
    terms = {k: v for k, v in record.items() if k.startswith("loss/") and k != "loss/ce"}
    return sum(terms.values()) if terms else record["train_loss"]


@halting_rule("plateau")
class Plateau(HaltingRule):
    """Accuracy has not improved by ``min_delta`` for ``patience`` epochs."""

    shown: ClassVar[tuple[str, ...]] = ("patience", "min_delta")

    kind: Literal["plateau"] = "plateau"
    patience: int = Field(3, gt=0)
    min_delta: float = Field(0.001, ge=0)
    statistic: Literal["max", "mean"] = Field(
        "max", description="compare the best (max) or the mean accuracy of the last "
        "`patience` epochs with the best of all before (max) or the mean of the `patience` "
        "before them (mean; one lucky epoch does not set the bar)")

    def check(self, history: list[dict[str, Any]], read: Reading) -> str | None:
        p, acc = self.patience, read.acc
        if len(history) <= p:
            return None
        if self.statistic == "mean":
            if len(history) < 2 * p:
                return None
            recent = sum(r[acc] for r in history[-p:]) / p
            before = sum(r[acc] for r in history[-2 * p:-p]) / p
            what = f"mean {read.split} accuracy {recent:.4f} of the last {p} epochs"
        else:
            before = max(r[acc] for r in history[:-p])
            recent = max(r[acc] for r in history[-p:])
            what = f"{read.split} accuracy {recent:.4f} in the last {p} epochs"
        if recent < before + self.min_delta:
            return f"plateau: {what} did not beat {before:.4f} by {self.min_delta}"
        return None


@halting_rule("agreement")
class Agreement(HaltingRule):
    """The student agrees with the teacher on at least ``threshold`` of the samples."""

    needs_teacher: ClassVar[bool] = True
    shown: ClassVar[tuple[str, ...]] = ("threshold",)

    kind: Literal["agreement"] = "agreement"
    threshold: float = Field(0.95, gt=0)

    def check(self, history: list[dict[str, Any]], read: Reading) -> str | None:
        agreement = history[-1].get(f"{read.prefix}agreement", 0.0)
        if agreement >= self.threshold:
            return (f"agreement: student agrees with teacher on {agreement:.4f} >= "
                    f"{self.threshold} of the {read.split} set")
        return None


@halting_rule("teacher_gap")
class TeacherGap(HaltingRule):
    """Teacher accuracy minus student accuracy is below ``epsilon``."""

    needs_teacher: ClassVar[bool] = True
    shown: ClassVar[tuple[str, ...]] = ("epsilon",)

    kind: Literal["teacher_gap"] = "teacher_gap"
    epsilon: float = Field(0.005, ge=0)

    def check(self, history: list[dict[str, Any]], read: Reading) -> str | None:
        last = history[-1]
        gap = last[f"teacher_{read.prefix}acc"] - last[read.acc]
        if gap < self.epsilon:
            return f"teacher_gap: {gap:.4f} below {self.epsilon} on the {read.split} set"
        return None


@halting_rule("loss_improvement")
class LossImprovement(HaltingRule):
    """The distillation loss improved less than ``delta`` (relative) over ``window``
    epochs."""

    shown: ClassVar[tuple[str, ...]] = ("window", "delta")

    kind: Literal["loss_improvement"] = "loss_improvement"
    window: int = Field(3, gt=0)
    delta: float = Field(0.01, ge=0)

    def check(self, history: list[dict[str, Any]], read: Reading) -> str | None:
        if len(history) <= self.window:
            return None
        before = distill_loss(history[-self.window - 1])
        now = distill_loss(history[-1])
        rel = (before - now) / max(abs(before), 1e-12)
        if rel < self.delta:
            return (f"loss_improvement: distillation loss improved {rel:.4f} over "
                    f"{self.window} epochs, below {self.delta}")
        return None

"""``HaltingCallback``: the halting state machine around the Trainer.

After every epoch the rules read the metric history; when they fire, the state at the
end of that epoch is kept as ``checkpoints/halt.pt`` (the full schedule, or another
anneal length, can branch from it), and training either stops at once or first anneals
the learning rate to the schedule's floor over ``halting_anneal_epochs`` (cosine from
the rate at the halt). The anneal in progress travels in the trainer's checkpoint, so a
resumed run finishes it exactly; a checkpoint written with a ``pending_halt`` (a branch
from ``halt.pt``, or a replay) starts this run's own anneal setting at once.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edgedistill.config import HaltingRule, RunBase
from edgedistill.errors import UsageError
from edgedistill.train.callbacks import Callback
from edgedistill.train.halting.rules import should_halt


def halt_checkpoint(run_dir: str | Path) -> Path:
    """Where a run keeps its state at the end of the epoch where a rule fired."""
    return Path(run_dir) / "checkpoints" / "halt.pt"


class HaltingCallback(Callback):
    def __init__(self, rules: list[HaltingRule], mode: str = "any", anneal_epochs: int = 0):
        self.rules = list(rules)
        self.mode = mode
        self.anneal_epochs = anneal_epochs
        self.annealing: dict[str, Any] | None = None

    def adjust_lr(self, trainer, lr: float) -> float:
        if self.annealing is None:
            return lr
        cfg = trainer.cfg.train
        a = self.annealing
        floor = cfg.optimizer.lr * cfg.schedule.min_lr_ratio
        t = min((trainer.global_step - a["start_step"]) / max(a["steps"], 1), 1.0)
        return floor + (a["lr0"] - floor) * 0.5 * (1 + math.cos(math.pi * t))

    def on_epoch_done(self, trainer, record: dict[str, Any]) -> None:
        from edgedistill.train.checkpoint import save_checkpoint

        reason = should_halt(self.rules, trainer.records, self.mode)
        # with several ranks, rank 0's decision: every rank stops (or anneals) together
        reasons = trainer.parallel.decide([reason] if reason else [])
        if reasons and self.annealing is None and trainer.parallel.main:
            save_checkpoint(halt_checkpoint(trainer.run_dir), {
                **trainer.state(),
                "pending_halt": json.dumps({"reasons": reasons, "record": record})})
        self._advance(trainer, reasons, record)

    def _advance(self, trainer, reasons: list[str], record: dict[str, Any]) -> None:
        """Stop now, or start the anneal the config asks for and stop at its end."""
        metrics = {k: v for k, v in record.items() if not k.startswith("loss/")}
        if self.annealing is not None:
            if trainer.epoch >= self.annealing["end_epoch"]:
                trainer.stop({**self.annealing["halt"], "annealed_epochs":
                              self.annealing["end_epoch"] - self.annealing["halt"]["epoch"] - 1,
                              "metrics_after_anneal": metrics})
            return
        if not reasons:
            return
        halt = {"reason": "; ".join(reasons), "epoch": record["epoch"], "metrics": metrics}
        anneal = min(self.anneal_epochs, trainer.epochs - trainer.epoch)
        if anneal <= 0:
            trainer.stop(halt)
            return
        self.annealing = {"halt": halt, "start_step": trainer.global_step,
                          "steps": anneal * trainer.steps_per_epoch, "lr0": record["lr"],
                          "end_epoch": trainer.epoch + anneal}

    def state_dict(self) -> dict[str, Any]:
        return {"annealing": json.dumps(self.annealing)}

    def load_state_dict(self, trainer, state: dict[str, Any]) -> None:
        self.annealing = json.loads(state.get("annealing", "null"))
        pending = json.loads(state.get("pending_halt", "null"))
        if pending and self.rules:
            # a branch from halt.pt: this run's own anneal setting decides what follows
            self._advance(trainer, pending["reasons"], pending["record"])


def halting_callbacks(cfg: RunBase, has_teacher: bool = False) -> list[Callback]:
    """The halting callback of ``cfg`` (none without rules)."""
    if not cfg.halting:
        return []
    needs = sorted({r.kind for r in cfg.halting if r.needs_teacher})
    if needs and not has_teacher:
        raise UsageError(f"halting rules {needs} need a teacher; use them with "
                         "`edgedistill distill`, or use plateau/loss_improvement")
    return [HaltingCallback(cfg.halting, cfg.halting_mode, cfg.halting_anneal_epochs)]

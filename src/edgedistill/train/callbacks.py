"""Trainer callbacks: what happens around training (progress, teacher references,
halting, run loggers) without the Trainer knowing about it.

Per epoch the Trainer calls every callback's ``on_epoch_end`` (which may add keys to the
record), then advances its counters and calls ``on_epoch_done`` (whatever a callback
changes there is in the checkpoint written next). A callback stops training with
``trainer.stop(info)``; ``info`` becomes ``summary.json``'s ``halted``.
"""

from __future__ import annotations

import sys
from typing import Any


class Callback:
    def on_train_start(self, trainer) -> None:
        """Called once before the first step (also after a resume)."""

    def adjust_lr(self, trainer, lr: float) -> float:
        """The learning rate of the next step, given the schedule's (default: unchanged)."""
        return lr

    def on_step_end(self, trainer, step_metrics: dict[str, float]) -> None:
        """Called after every optimizer step."""

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        """Called with the epoch's metrics, before they are logged; may add to them."""

    def on_epoch_done(self, trainer, record: dict[str, Any]) -> None:
        """Called once the epoch is counted (``trainer.epoch`` is the next one) and in
        ``trainer.records``, before the checkpoint is written."""

    def on_train_end(self, trainer, summary: dict[str, Any]) -> None:
        """Called after ``summary.json`` is written."""

    def state_dict(self) -> dict[str, Any]:
        """What this callback keeps in the trainer's checkpoint (top-level keys)."""
        return {}

    def load_state_dict(self, trainer, state: dict[str, Any]) -> None:
        """Restore from a checkpoint (the trainer's own state is already loaded)."""

    def close(self) -> None:
        """Called when training ends, normally or not."""


class PrintProgress(Callback):
    """One line per epoch, and a live rich bar when stdout is a terminal."""

    def __init__(self, every_steps: int = 20):
        self.every = every_steps
        self._progress = None
        self._task = None

    def on_train_start(self, trainer) -> None:
        if sys.stdout.isatty():
            from rich.progress import Progress

            self._progress = Progress(transient=True)
            self._progress.start()

    def on_step_end(self, trainer, step_metrics: dict[str, float]) -> None:
        if self._progress is None:
            return
        if self._task is None or step_metrics["step"] == 0:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(
                f"epoch {step_metrics['epoch'] + 1}", total=trainer.steps_per_epoch)
        if step_metrics["step"] % self.every == 0 or step_metrics["step"] + 1 == \
                trainer.steps_per_epoch:
            desc = (f"epoch {step_metrics['epoch'] + 1} loss {step_metrics['loss']:.3f} "
                    f"acc {step_metrics['acc']:.3f} {step_metrics['images_per_s']:.0f} img/s")
            self._progress.update(self._task, completed=step_metrics["step"] + 1,
                                  description=desc)

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        terms = " ".join(f"{k[5:]}={v:.3f}" for k, v in record.items() if k.startswith("loss/"))
        extra = "".join(f" {k}={record[k]:.3f}" for k in ("teacher_wait_s", "replicas")
                        if k in record)
        val = f" val_acc {record['val_acc']:.4f}" if "val_acc" in record else ""
        print(f"epoch {record['epoch'] + 1}/{trainer.epochs} loss {record['train_loss']:.4f} "
              f"({terms}) train_acc {record['train_acc']:.4f} test_acc {record['test_acc']:.4f}{val} "
              f"{record['images_per_s']:.0f} img/s {record['epoch_seconds']:.1f}s{extra}",
              flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()

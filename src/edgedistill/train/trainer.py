"""The generic Trainer: sums and logs a task's named losses, writes the run dir.

A run directory holds ``config.yaml``, ``metrics.jsonl`` (one JSON object per
epoch), ``summary.json``, ``model.safetensors`` (the eval model, last epoch),
``checkpoints/last.pt`` (full state), ``checkpoints/halt.pt`` (the state at the end of
the epoch where a halting rule fired, from which the full schedule or another anneal can
branch), with ``train.keep_epoch_checkpoints`` also ``checkpoints/epochNNN.pt``, and
``plots/``. With a validation pipeline, each epoch also records ``val_acc`` and
``val_loss``, which halting rules then read instead of the test metrics. Data order and
augmentation are pure functions of (seed, epoch, step), so a checkpoint that stores the
model, optimizer, RNG and position resumes to the same numbers as a run that was never
interrupted.

The Trainer only trains: what happens around it is callbacks (``callbacks.py``). The
halting state machine (``halt.pt``, the anneal) is ``train/halting/``; ``metrics.jsonl``,
``plots/`` and any ``loggers:`` of the config are run loggers (``train/loggers/``), which
the Trainer adds itself after the callbacks it is given.

A non-finite loss stops training at once with ``TrainingDiverged`` (exit status 2 from
the CLI), and weights are checked finite before anything is written, so the last good
checkpoint is never replaced by a poisoned state. A resumed run repairs a
``metrics.jsonl`` whose last line a kill tore mid-write: that epoch is recomputed from
the checkpoint anyway.

As one rank of a data-parallel job (``--nproc N`` or torchrun), the rank-specific part
lives in ``distributed.DataParallel`` (``self.parallel``): DDP wraps the task, epoch
sums are reduced, halting follows rank 0, and only rank 0 writes the run directory.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgedistill.config import RunBase, dump_config
from edgedistill.errors import UsageError
from edgedistill.train.callbacks import Callback
from edgedistill.train.checkpoint import (
    atomic_write,
    check_fits,
    save_checkpoint,
    save_weights,
)
from edgedistill.train.device import autocast, resolve_device, to_layout
from edgedistill.train.distributed import DataParallel, reduce_eval
from edgedistill.train.schedule import lr_at


def build_optimizer(params, cfg) -> torch.optim.Optimizer:
    opt = cfg.optimizer
    if opt.name == "sgd":
        return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum,
                               nesterov=opt.nesterov and opt.momentum > 0,
                               weight_decay=opt.weight_decay)
    cls = torch.optim.Adam if opt.name == "adam" else torch.optim.AdamW
    return cls(params, lr=opt.lr, betas=opt.betas, weight_decay=opt.weight_decay)


@torch.no_grad()
def evaluate(model: nn.Module, pipe, device: torch.device, amp: bool = True) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` over an eval pipeline."""
    was_training = model.training
    model.eval()
    correct, loss_sum, seen, preds = 0, 0.0, 0, []
    for batch in pipe.epoch(0):
        with autocast(device, amp):
            logits = model(batch.images)
        logits = logits.float()
        loss_sum += torch.nn.functional.cross_entropy(logits, batch.labels, reduction="sum").item()
        preds.append(logits.argmax(1).cpu())
        correct += (preds[-1] == batch.labels.cpu()).sum().item()
        seen += batch.labels.numel()
    model.train(was_training)
    correct, loss_sum, seen, preds = reduce_eval(pipe, correct, loss_sum, seen, preds)
    return {"acc": correct / max(seen, 1), "loss": loss_sum / max(seen, 1),
            "preds": torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)}


class TrainingDiverged(UsageError):
    """The loss or the weights went non-finite: the settings diverged (a learning rate too
    high) or the data holds NaN/inf. Nothing of the poisoned state is written."""


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``; a torn last line (a kill while it was being
    written) is dropped, a damaged line before it is an error."""
    lines = [x for x in path.read_text().splitlines() if x.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise UsageError(f"{path}: line {i + 1} is not JSON; the file was edited or "
                                 "damaged, delete the run directory to start over") from None
            print(f"{path}: dropped a torn last line (the run was killed while writing it)",
                  flush=True)
    return records


def epoch_checkpoint(run_dir: str | Path, epoch: int) -> Path:
    """Where ``train.keep_epoch_checkpoints`` keeps the state after epoch index ``epoch``."""
    return Path(run_dir) / "checkpoints" / f"epoch{epoch:03d}.pt"


class Trainer:
    def __init__(self, task: nn.Module, train_pipe, test_pipe, cfg: RunBase, run_dir: str | Path,
                 callbacks: list[Callback] = (), device: torch.device | None = None,
                 summary_extra: dict[str, Any] | None = None, val_pipe=None):
        self.cfg = cfg
        self.summary_extra = dict(summary_extra or {})
        self.task = task
        self.train_pipe = train_pipe
        self.test_pipe = test_pipe
        self.val_pipe = val_pipe
        self.run_dir = Path(run_dir)
        self.callbacks = list(callbacks)
        self.device = device or resolve_device(cfg.train.device)
        self.epochs = cfg.train.epochs
        self.steps_per_epoch = len(train_pipe)
        self.total_steps = self.epochs * self.steps_per_epoch
        to_layout(self.task, self.device, cfg.train.memory_format)
        self.parallel = DataParallel(self)
        if self.parallel.main:  # loggers write the run directory: rank 0's job
            from edgedistill.train.loggers import run_loggers

            self.callbacks += run_loggers(getattr(cfg, "loggers", []))
        params = [p for p in task.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(params, cfg.train)
        self.records: list[dict[str, Any]] = []
        self.halted: dict[str, Any] | None = None
        self._fresh_accum()
        self.epoch, self.step, self.global_step = 0, 0, 0
        self.wall, self.images_seen, self.best_acc, self.best_epoch = 0.0, 0, -1.0, -1
        self.saved_at: tuple[int, int] | None = None

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def _fresh_accum(self) -> None:
        self.accum = {"loss_sums": {}, "correct": 0, "seen": 0, "epoch_seconds": 0.0}

    # ---- state ----
    def state(self) -> dict[str, Any]:
        return {
            "model": self.task.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch, "step": self.step, "global_step": self.global_step,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "accum": self.accum, "wall": self.wall, "images_seen": self.images_seen,
            "best_acc": self.best_acc, "best_epoch": self.best_epoch,
            "halted": json.dumps(self.halted),
            **{k: v for cb in self.callbacks for k, v in cb.state_dict().items()},
            "spec": json.dumps(self.eval_spec()),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.task.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.global_step = state["global_step"]
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.accum = state["accum"]
        self.wall, self.images_seen = state["wall"], state["images_seen"]
        self.best_acc, self.best_epoch = state["best_acc"], state["best_epoch"]
        self.halted = json.loads(state.get("halted", "null"))
        for cb in self.callbacks:
            cb.load_state_dict(self, state)

    def eval_spec(self) -> dict:
        return getattr(self.task.eval_model, "spec", {})

    def save(self) -> None:
        state = self.parallel.checkpoint_state(self)
        if state is not None:
            save_checkpoint(self.ckpt_path, state)
        self.saved_at = (self.epoch, self.step)

    # ---- divergence ----
    def _diverged(self, what: str, lr: float, step: int) -> TrainingDiverged:
        """The error for step ``step`` (counted from 1) of the current epoch."""
        if self.saved_at is None:
            kept = "no checkpoint was written"
        else:
            epoch, done = self.saved_at
            at = f"end of epoch {epoch}" if done == 0 else f"epoch {epoch + 1}, step {done}"
            kept = f"the last good checkpoint {self.ckpt_path} ({at}) is kept"
        return TrainingDiverged(
            f"training diverged at epoch {self.epoch + 1}/{self.epochs}, step {step}/"
            f"{self.steps_per_epoch}: {what} (learning rate {lr:g}); {kept}. "
            "Lower train.optimizer.lr (or set train.grad_clip) and check the data for NaN/inf")

    def _check_loss(self, total: float, losses: dict[str, torch.Tensor], lr: float) -> None:
        """One ``isfinite`` on the summed loss per step; the terms are named only on failure."""
        if math.isfinite(total):
            return
        values = {k: v.item() for k, v in losses.items()}
        bad = [f"{k}={v}" for k, v in values.items() if not math.isfinite(v)]
        what = (f"loss term(s) {', '.join(bad)} not finite" if bad else
                f"the loss terms ({', '.join(f'{k}={v:g}' for k, v in values.items())}) "
                "sum to a non-finite loss")
        raise self._diverged(what, lr, self.step + 1)

    def _check_weights(self, lr: float) -> None:
        """A step with a finite loss can still leave non-finite weights (an infinite learning
        rate); checked before each save, with one device sync."""
        tensors = [(k, v) for k, v in self.task.state_dict().items() if v.is_floating_point()]
        if not tensors:
            return
        finite = torch.stack([torch.isfinite(v).all() for _, v in tensors]).tolist()
        bad = [k for (k, _), ok in zip(tensors, finite, strict=True) if not ok]
        if bad:
            shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise self._diverged(f"model state {shown} not finite after the step", lr, self.step)

    # ---- run dir ----
    def _prepare_run_dir(self, resume: bool) -> None:
        (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(dump_config(self.cfg))
        metrics = self.run_dir / "metrics.jsonl"
        if resume and metrics.exists():
            self.records = [r for r in read_records(metrics) if r["epoch"] < self.epoch]
            text = "".join(json.dumps(r) + "\n" for r in self.records)
            atomic_write(metrics, lambda tmp: Path(tmp).write_text(text))
        elif metrics.exists():
            metrics.unlink()

    def _lr(self) -> float:
        cfg = self.cfg.train
        lr = lr_at(self.global_step, self.total_steps, self.steps_per_epoch, cfg.optimizer.lr,
                   cfg.schedule)
        for cb in self.callbacks:  # e.g. the anneal after a halt
            lr = cb.adjust_lr(self, lr)
        return lr

    def stop(self, info: dict[str, Any]) -> None:
        """End training after this epoch; ``info`` (why, when) is the summary's ``halted``."""
        self.halted = info

    # ---- loop ----
    def fit(self, resume: bool = False) -> dict[str, Any]:
        state = self.parallel.resume_state(self.ckpt_path) if resume else None
        if state is not None:
            check_fits(self.task, state, self.ckpt_path)
            self.load_state(state)
            self.saved_at = (self.epoch, self.step)
        else:
            torch.manual_seed(self.cfg.seed)
        if self.parallel.main:
            self._prepare_run_dir(resume)
        for cb in self.callbacks:
            cb.on_train_start(self)
        try:
            while self.epoch < self.epochs and self.halted is None:
                self._train_epoch()
            return self._finish()
        finally:
            for cb in self.callbacks:
                cb.close()

    def _train_epoch(self) -> None:
        cfg = self.cfg.train
        self.task.train()
        tic = time.perf_counter()
        for batch in self.train_pipe.epoch(self.epoch, start_step=self.step):
            lr = self._lr()
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with autocast(self.device, cfg.amp):
                logits, losses = self.parallel.model(batch)
            total = sum(losses.values())
            self.optimizer.zero_grad(set_to_none=True)
            if total.requires_grad:  # every term can be inactive (staged FitNets)
                total.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.task.parameters(), cfg.grad_clip)
                self.optimizer.step()
            loss = total.item()
            self._check_loss(loss, losses, lr)
            n = batch.labels.numel()
            sums = self.accum["loss_sums"]
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value.item() * n
            self.accum["correct"] += (logits.argmax(1) == batch.labels).sum().item()
            self.accum["seen"] += n
            self.images_seen += n
            self.step += 1
            self.global_step += 1
            elapsed = self.accum["epoch_seconds"] + time.perf_counter() - tic
            step_metrics = {"epoch": self.epoch, "step": self.step - 1, "lr": lr,
                            "loss": loss, "acc": self.accum["correct"] / self.accum["seen"],
                            "images_per_s": self.accum["seen"] / max(elapsed, 1e-9)}
            for cb in self.callbacks:
                cb.on_step_end(self, step_metrics)
            every = cfg.checkpoint_every_steps
            if every and self.global_step % every == 0 and self.step < self.steps_per_epoch:
                self.accum["epoch_seconds"] = elapsed
                self.wall += time.perf_counter() - tic
                tic = time.perf_counter()
                self._check_weights(lr)
                self.save()
        self._end_epoch(lr, tic)

    def _end_epoch(self, lr: float, tic: float) -> None:
        train_seconds = self.accum["epoch_seconds"] + time.perf_counter() - tic
        self.wall += time.perf_counter() - tic
        self._check_weights(lr)
        self.parallel.sync_buffers(self.task)
        self.parallel.reduce_accum(self)
        result = evaluate(self.task.eval_model, self.test_pipe, self.device, self.cfg.train.amp)
        self.last_eval_preds = result["preds"]
        val = {}
        if self.val_pipe is not None:
            res = evaluate(self.task.eval_model, self.val_pipe, self.device, self.cfg.train.amp)
            self.last_val_preds = res["preds"]
            val = {"val_acc": res["acc"], "val_loss": res["loss"]}
        seen = max(self.accum["seen"], 1)
        record: dict[str, Any] = {
            "epoch": self.epoch, "lr": lr,
            "train_loss": sum(self.accum["loss_sums"].values()) / seen,
            **{f"loss/{k}": v / seen for k, v in self.accum["loss_sums"].items()},
            "train_acc": self.accum["correct"] / seen,
            "test_acc": result["acc"], "test_loss": result["loss"], **val,
            "epoch_seconds": train_seconds, "images_per_s": self.accum["seen"] / train_seconds,
            "wall_seconds": self.wall, "images_seen": self.images_seen,
        }
        record.update(getattr(self.task, "epoch_stats", lambda: {})())
        if result["acc"] > self.best_acc:
            self.best_acc, self.best_epoch = result["acc"], self.epoch
        for cb in self.callbacks:
            cb.on_epoch_end(self, record)
        self.records.append(record)
        self.epoch += 1
        self.step = 0
        self._fresh_accum()
        for cb in self.callbacks:
            cb.on_epoch_done(self, record)
        if self.parallel.main:
            save_weights(self.run_dir / "model.safetensors", self.task.eval_model.state_dict(),
                         self.eval_spec())
        self.save()
        if self.cfg.train.keep_epoch_checkpoints and self.parallel.main:
            shutil.copyfile(self.ckpt_path, epoch_checkpoint(self.run_dir, self.epoch - 1))

    def _finish(self) -> dict[str, Any]:
        last = self.records[-1] if self.records else {}
        summary = {
            "name": self.cfg.name, "spec": self.eval_spec(), "device": str(self.device),
            "epochs_run": len(self.records), "epochs_planned": self.epochs,
            "final_test_acc": last.get("test_acc"), "best_test_acc": self.best_acc,
            **({"final_val_acc": last["val_acc"]} if "val_acc" in last else {}),
            "best_epoch": self.best_epoch, "wall_seconds": self.wall,
            "images_seen": self.images_seen, "halted": self.halted,
            **self.parallel.describe(),
        }
        summary.update(self.summary_extra)
        if not self.parallel.main:
            return summary
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        for cb in self.callbacks:
            cb.on_train_end(self, summary)
        return summary

"""Learning-rate schedules as pure functions of the global step.

Pure functions (rather than stateful scheduler objects) make resuming from any
step exact: the rate depends only on where we are.
"""

from __future__ import annotations

import math

from edgedistill.config import ScheduleConfig


def lr_at(step: int, total_steps: int, steps_per_epoch: int, base_lr: float,
          cfg: ScheduleConfig) -> float:
    total_steps = max(total_steps, 1)
    min_lr = base_lr * cfg.min_lr_ratio
    if cfg.name == "onecycle":
        peak = max(int(total_steps * cfg.pct_start), 1)
        if step < peak:
            return base_lr * (0.04 + 0.96 * step / peak)
        frac = (step - peak) / max(total_steps - peak, 1)
        return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if cfg.name == "constant":
        return base_lr
    if cfg.name == "step":
        epoch = step / max(steps_per_epoch, 1)
        epochs = total_steps / max(steps_per_epoch, 1)
        milestones = cfg.milestones or [0.5 * epochs, 0.75 * epochs]
        return base_lr * cfg.gamma ** sum(epoch >= m for m in milestones)
    frac = (step - warmup) / max(total_steps - warmup, 1)
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))

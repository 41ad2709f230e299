"""Replaying halting rules on a finished run: the rules are pure functions of the metric
history, so on a full run kept with ``train.keep_epoch_checkpoints`` any other rule set
is tried by reading its halting epoch off the full run's records and training only its
anneal, from that epoch's checkpoint with the halt pending. ``branch`` starts a run from
another run's checkpoint (the full schedule after a halt, other anneal lengths)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edgedistill.config import HaltingRule
from edgedistill.errors import UsageError
from edgedistill.train.checkpoint import load_checkpoint, save_checkpoint
from edgedistill.train.halting.rules import first_halt
from edgedistill.train.trainer import epoch_checkpoint, read_records


def branch(src: Path, dst: Path, checkpoint: str, upto: int | None = None) -> None:
    """Start run ``dst`` from ``src``'s ``checkpoint``, the state after epoch index ``upto``
    (None: don't keep epoch checkpoints), with ``src``'s epoch records (the Trainer keeps
    those before the checkpoint's epoch) and the epoch checkpoints ``src`` kept before it.
    A no-op once ``dst`` has begun."""
    if (dst / "checkpoints" / "last.pt").exists():
        return
    (dst / "checkpoints").mkdir(parents=True, exist_ok=True)
    start = src / "checkpoints" / checkpoint
    if upto is not None:
        for epoch in range(upto):
            kept = epoch_checkpoint(src, epoch)
            if kept.exists():
                shutil.copyfile(kept, epoch_checkpoint(dst, epoch))
        if epoch_checkpoint(src, upto).exists():  # src's own is past the halt: annealing
            shutil.copyfile(start, epoch_checkpoint(dst, upto))
    shutil.copyfile(start, dst / "checkpoints" / "last.pt")
    shutil.copyfile(src / "metrics.jsonl", dst / "metrics.jsonl")


def prepare_replay(full_dir: str | Path, rules: list[HaltingRule], mode: str,
                   out: str | Path) -> bool:
    """Write run ``out`` as ``rules`` would have left it at their halt on the full run in
    ``full_dir`` (its checkpoint of that epoch with the halt pending, its records); False
    when no rule fires within the full run. Resuming ``out`` then trains only the anneal
    and is bit-identical to a live run of the same config (tested)."""
    full_dir, out = Path(full_dir), Path(out)
    records = read_records(full_dir / "metrics.jsonl")
    fired = first_halt(rules, records, mode)
    if fired is None:
        return False
    epoch, reason = fired
    if (out / "checkpoints" / "last.pt").exists():
        return True
    kept = epoch_checkpoint(full_dir, epoch)
    if not kept.exists():
        raise UsageError(f"{kept} is missing: the rules fire after epoch {epoch + 1}, and "
                         "replaying needs the full run's checkpoint of that epoch; train "
                         "it with train.keep_epoch_checkpoints: true")
    state = load_checkpoint(kept)
    state["pending_halt"] = json.dumps({"reasons": [reason], "record": records[epoch]})
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "checkpoints" / "last.pt", state)
    shutil.copyfile(full_dir / "metrics.jsonl", out / "metrics.jsonl")
    return True

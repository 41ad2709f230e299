"""``--nproc N``: the same ``edgedistill`` command as N ranks on this machine.

The ranks are started by torch's own launcher (``torch.distributed.run``, i.e. torchrun,
standalone rendezvous on a free local port, no restarts), so a job started here and one
a user starts with ``torchrun --nnodes ... -m edgedistill ...`` run the same code. When a
rank fails or is killed, torchrun's agent (polling every ``MONITOR_S``) stops the others;
this turns its report into one line that names the rank and says how to continue.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

from edgedistill.errors import UsageError

MONITOR_S = 0.5
SYNC_BN_CPU = ("train.sync_bn: torch's SyncBatchNorm runs on CUDA only; on CPU set it to "
               "false (each rank then normalizes its own slice of the batch)")


class RankFailed(UsageError):
    """A rank of a data-parallel job failed; the job was stopped."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def without_nproc(argv: list[str]) -> list[str]:
    """``argv`` minus ``--nproc N`` / ``--nproc=N`` (the ranks run the command itself)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def launch(nproc: int, argv: list[str], run_dir: Path) -> None:
    """Run ``edgedistill ARGV`` as ``nproc`` ranks and wait; raise ``RankFailed`` naming
    the rank that failed first (a signal before an exit status)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args([
        "--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0",
        f"--monitor-interval={MONITOR_S}", "-m", "edgedistill.cli", *argv])
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed.elastic"):  # its report becomes our one line
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        run(args)
    except ChildFailedError as err:
        raise failure_message(err, nproc, run_dir) from None


def check_before_start(cfg, nproc: int) -> None:
    """Refuse, before any rank starts, what every rank would refuse: a batch that does not
    split into equal slices, SyncBatchNorm without CUDA, more ranks than GPUs."""
    import torch

    from edgedistill.train.device import resolve_device

    if cfg.data.batch_size % nproc:
        raise UsageError(f"data.batch_size {cfg.data.batch_size} does not split into {nproc} "
                         f"equal slices (one per rank); make it a multiple of {nproc}")
    device = resolve_device(cfg.train.device)
    if cfg.train.sync_bn and device.type != "cuda":
        raise UsageError(SYNC_BN_CPU)
    if device.type == "cuda" and nproc > torch.cuda.device_count():
        raise UsageError(f"--nproc {nproc} on {torch.cuda.device_count()} CUDA device(s): one "
                         f"device per rank; use --nproc {torch.cuda.device_count()} or fewer, "
                         "or train.device=cpu")


def _cause_order(kv) -> tuple:
    """First the rank that died by a signal, then one that exited on its own, last those
    the agent stopped with SIGTERM after the failure."""
    rank, failure = kv
    code = failure.exitcode
    kind = 2 if code == -signal.SIGTERM else (0 if code < 0 else 1)
    return failure.timestamp, kind, rank


def failure_message(err, nproc: int, run_dir: Path) -> RankFailed:
    rank, failure = min(err.failures.items(), key=_cause_order)
    if failure.exitcode < 0:
        try:
            how = f"was killed by {signal.Signals(-failure.exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-failure.exitcode}"
    else:
        how = f"exited with status {failure.exitcode}"
    ckpt = run_dir / "checkpoints" / "last.pt"
    kept = (f"the last checkpoint {ckpt} is intact: continue with --resume" if ckpt.exists()
            else "no checkpoint was written")
    status = failure.exitcode if failure.exitcode > 0 else 1
    return RankFailed(f"rank {rank} of {nproc} (pid {failure.pid}) {how}; the job was "
                      f"stopped; {kept}", status)

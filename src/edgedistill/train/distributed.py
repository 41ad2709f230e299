"""Data-parallel training on torch.distributed: one process per rank, one device each.

torchrun (``torch.distributed.run``, started by ``--nproc N`` or by the user for several
machines) sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; ``init`` joins that process
group, gloo on CPU and NCCL on CUDA (each rank on ``cuda:LOCAL_RANK``). Outside torchrun
every helper here is a no-op, so the one-process path is unchanged.

``DataParallel`` is what a ``Trainer`` does differently as one of several ranks, kept
out of the trainer's body: the task is wrapped in DDP (gradients are averaged by DDP's
all-reduce, nothing home-made), per-rank sums are reduced before an epoch's record,
halting decisions are rank 0's, broadcast, and only rank 0 writes the run directory.
The batches are already this rank's slices (``BatchPipeline.shard``), so the global
batch of (seed, epoch, step) is the one-process batch.
"""

from __future__ import annotations

import atexit
import os
import pickle
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from edgedistill.errors import CheckpointError, UsageError

BACKENDS = {"cpu": "gloo", "cuda": "nccl"}
# A rank waits at a barrier while rank 0 builds a teacher cache or starts a Ray pool,
# which can take long; a rank that dies is caught by torchrun's agent, not by this.
TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class World:
    """This process's place among the ranks (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)),
                 dist.get_backend())


def init(device: str = "auto") -> World:
    """Join the process group torchrun prepared (once; a no-op outside torchrun or with
    one rank). On CUDA each rank takes ``cuda:LOCAL_RANK`` as its current device, so the
    ``cuda`` device every part of edgedistill resolves is this rank's own."""
    from edgedistill.train.device import resolve_device

    size = int(os.environ.get("WORLD_SIZE", "1"))
    if dist.is_initialized() or size == 1:
        return world()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type not in BACKENDS:
        raise UsageError(f"train.device {device!r}: data-parallel training runs on cpu or cuda")
    if dev.type == "cuda":
        if dev.index is not None:
            raise UsageError(f"train.device {device!r} with {size} ranks: each rank uses "
                             "cuda:LOCAL_RANK; set train.device to auto or cuda")
        here = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        if here > torch.cuda.device_count():
            raise UsageError(f"{here} ranks on this machine but {torch.cuda.device_count()} "
                             f"CUDA device(s); one device per rank: use --nproc "
                             f"{torch.cuda.device_count()} or fewer")
        torch.cuda.set_device(local)
    dist.init_process_group(BACKENDS[dev.type], timeout=TIMEOUT)
    atexit.register(leave)
    quiet_peer_loss()
    return world()


def leave() -> None:
    """Destroy the process group while the interpreter is still whole (at exit)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


def quiet_peer_loss() -> None:
    """A collective that fails because another rank died ends this rank with one line,
    not a traceback: the launcher names the rank that died first."""
    previous = sys.excepthook

    def hook(kind, err, tb):
        lost = isinstance(err, getattr(dist, "DistNetworkError", ())) or (
            isinstance(err, RuntimeError) and any(m in str(err) for m in PEER_LOST))
        if not lost:
            return previous(kind, err, tb)
        first = (str(err).splitlines() or [""])[0][:160]
        print(f"error: rank {os.environ.get('RANK', '?')}: another rank is gone ({first})",
              file=sys.stderr)

    sys.excepthook = hook


# How long a collective's caller waits for gloo to let go of its tensors (microseconds
# in practice) before it keeps them for the rest of the process instead.
SETTLE_S = 5.0
_kept: list[torch.Tensor] = []


def _device() -> torch.device:
    """Where the backend wants a collective's tensors (NCCL: CUDA only)."""
    return (torch.device("cuda", torch.cuda.current_device())
            if dist.get_backend() == "nccl" else torch.device("cpu"))


def _settled(tensors: list[torch.Tensor], collective) -> None:
    """Run a blocking ``collective`` on ``tensors``; return once the backend holds none.

    Gloo's worker thread keeps a finished collective's tensors for a moment after the
    caller's ``wait`` has returned. A tensor whose Python object the caller has already
    dropped is then freed by that thread, and the free takes the GIL: when it falls into
    interpreter teardown the thread is killed mid-unwind and the rank dies with SIGABRT
    ("terminate called without an active exception") after its work is done. Seen in 5
    of 40 two-rank runs while ``torch.distributed.all_gather_object`` made the tensors, 0
    of 70 since (core dump: ``~AsyncAllgatherWork`` in ``ProcessGroupGloo::runLoop`` waiting for the
    GIL while the main thread was in ``Py_FinalizeEx``); ``destroy_process_group`` does
    not stop those threads once DDP has used the group. So every collective here runs on
    tensors this module owns, and the caller waits (GIL released) until gloo's
    reference count on each is back to what it was: the last free is then ours."""
    before = [t._use_count() for t in tensors]
    collective()
    if dist.get_backend() != "gloo":
        return
    deadline = time.monotonic() + SETTLE_S
    while any(t._use_count() > b for t, b in zip(tensors, before, strict=True)):
        if time.monotonic() > deadline:
            _kept.extend(tensors)  # never freed by a worker thread, whatever it does
            return
        time.sleep(0.0002)


def _sums(values: list[float]) -> torch.Tensor:
    """``values`` summed over the ranks, as float64 (on the CPU)."""
    sums = torch.tensor(values, dtype=torch.float64, device=_device())
    _settled([sums], lambda: dist.all_reduce(sums))
    return sums.cpu()


def barrier() -> None:
    """Every rank waits here for the others (an all-reduce whose result is read, so the
    host waits on NCCL too)."""
    if world().size > 1:
        token = torch.zeros(1, device=_device())
        _settled([token], lambda: dist.all_reduce(token))
        token.item()


def _to_bytes(obj: Any) -> torch.Tensor:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).to(_device())


def _from_bytes(data: torch.Tensor) -> Any:
    return pickle.loads(data.cpu().numpy().tobytes())  # noqa: S301 (our own ranks' bytes)


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; for small things and checkpoints)."""
    w = world()
    if w.size == 1:
        return obj
    data = _to_bytes(obj) if w.main else None
    size = torch.tensor([0 if data is None else data.numel()], dtype=torch.int64,
                        device=_device())
    _settled([size], lambda: dist.broadcast(size, src=0))
    if data is None:
        data = torch.empty(int(size.item()), dtype=torch.uint8, device=_device())
    _settled([data], lambda: dist.broadcast(data, src=0))
    return obj if w.main else _from_bytes(data)


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    n = world().size
    if n == 1:
        return [obj]
    data = _to_bytes(obj)
    size = torch.tensor([data.numel()], dtype=torch.int64, device=_device())
    sizes = [torch.zeros_like(size) for _ in range(n)]
    _settled([size, *sizes], lambda: dist.all_gather(sizes, size))
    lengths = [int(s.item()) for s in sizes]
    padded = torch.zeros(max(lengths), dtype=torch.uint8, device=_device())
    padded[:data.numel()] = data
    parts = [torch.empty_like(padded) for _ in range(n)]
    _settled([padded, *parts], lambda: dist.all_gather(parts, padded))
    return [_from_bytes(p[:length]) for p, length in zip(parts, lengths, strict=True)]


@contextmanager
def main_first():
    """Rank 0 runs the block first, the others after it (a teacher cache is then built
    once, by rank 0, and found ready by every other rank)."""
    w = world()
    if not w.main:
        barrier()
    yield w  # a failure on rank 0 skips the barrier: torchrun then stops the waiting ranks
    if w.main:
        barrier()


def reduce_eval(pipe, correct: int, loss_sum: float, seen: int, preds: list[torch.Tensor]):
    """Sums over the ranks' slices of an eval pipeline, and the predictions in dataset
    order (each batch's slices put back together in rank order)."""
    if getattr(pipe, "world_size", 1) == 1:
        return correct, loss_sum, seen, preds
    sums = _sums([correct, loss_sum, seen])
    per_rank = gather(preds)
    merged = [torch.cat([r[i] for r in per_rank]) for i in range(len(preds))]
    return int(sums[0].item()), sums[1].item(), int(sums[2].item()), merged


def use_sync_batchnorm(module: nn.Module) -> int:
    """Turn every BatchNorm of ``module`` into torch's ``SyncBatchNorm`` in place (the same
    objects, so forward hooks by module path stay attached); returns how many."""
    count = 0
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(
                m, nn.SyncBatchNorm):
            m.__class__ = nn.SyncBatchNorm
            m.process_group = None
            count += 1
    return count


class DataParallel:
    """The rank-specific part of a Trainer; with one rank every method is a no-op."""

    def __init__(self, trainer):
        self.world = w = world()
        self.model: nn.Module = trainer.task
        self.devices = [str(trainer.device)]
        if w.size == 1:
            return
        device = trainer.device
        if trainer.cfg.train.sync_bn:
            if device.type != "cuda":
                from edgedistill.train.launch import SYNC_BN_CPU

                raise UsageError(SYNC_BN_CPU)
            use_sync_batchnorm(trainer.task)
        for pipe in (trainer.train_pipe, trainer.test_pipe, trainer.val_pipe):
            if pipe is not None and (pipe.rank, pipe.world_size) != (w.rank, w.size):
                pipe.shard(w.rank, w.size)
        index = torch.cuda.current_device() if device.type == "cuda" else None
        eval_params = {id(p) for p in trainer.task.eval_model.parameters()}
        adaptors = any(p.requires_grad and id(p) not in eval_params
                       for p in trainer.task.parameters())
        # adaptors of staged terms sit out some epochs: DDP must then look for unused ones
        self.model = nn.parallel.DistributedDataParallel(
            trainer.task, device_ids=None if index is None else [index],
            find_unused_parameters=adaptors)
        here = f"cuda:{index}" if index is not None else str(device)
        self.devices = gather(here)

    @property
    def main(self) -> bool:
        return self.world.main

    def describe(self) -> dict[str, Any]:
        """What the run directory records about the ranks."""
        return {"world_size": self.world.size, "backend": self.world.backend,
                "devices": self.devices}

    # ---- per-epoch sums ----
    def reduce_accum(self, trainer) -> None:
        """Sum the ranks' epoch sums into ``trainer.accum`` (and the images it saw)."""
        if self.world.size == 1:
            return
        acc = trainer.accum
        names = sorted(acc["loss_sums"])
        sums = _sums([acc["loss_sums"][k] for k in names] + [acc["correct"], acc["seen"]])
        seen = int(sums[-1].item())
        trainer.images_seen += seen - acc["seen"]
        acc["loss_sums"] = dict(zip(names, sums[:len(names)].tolist(), strict=True))
        acc["correct"], acc["seen"] = int(sums[-2].item()), seen

    def sync_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics) on every rank before evaluating: each
        rank's last step updated them from its own slice."""
        if self.world.size == 1:
            return
        bufs = list(module.buffers())
        _settled(bufs, lambda: [dist.broadcast(b, src=0) for b in bufs])

    def decide(self, reasons: list[str]) -> list[str]:
        """Rank 0's halting reasons, so every rank stops (or anneals) at the same epoch."""
        return broadcast(reasons)

    # ---- checkpoints ----
    def checkpoint_state(self, trainer) -> dict[str, Any] | None:
        """The state rank 0 writes (every rank's epoch sums in it, so the same number of
        ranks resumes each rank's own); None on the other ranks, which write nothing."""
        accums = gather(trainer.accum)
        if not self.main:
            return None
        state = trainer.state()
        state["world_size"] = self.world.size
        if self.world.size > 1:
            state["accum_ranks"] = accums
        return state

    def resume_state(self, path: Path) -> dict[str, Any] | None:
        """The checkpoint to resume from (rank 0 reads it, every rank gets it), with this
        rank's own epoch sums; None without one. A checkpoint written mid-epoch by another
        number of ranks is refused: that epoch's sums were split another way."""
        from edgedistill.train.checkpoint import load_checkpoint

        def read():
            try:
                return load_checkpoint(path) if path.exists() else None
            except CheckpointError as err:
                return err

        state = broadcast(read() if self.main else None)
        if isinstance(state, CheckpointError):
            raise state
        if state is None:
            return None
        written = int(state.get("world_size", 1))
        if state["step"] == 0:
            state["accum"] = state["accum"] if self.main else fresh_like(state["accum"])
        elif written == self.world.size:
            state["accum"] = state.get("accum_ranks", [state["accum"]])[self.world.rank]
        else:
            raise CheckpointError(
                f"checkpoint {str(path)!r} was written by {written} rank(s) mid-epoch (epoch "
                f"{state['epoch'] + 1}, step {state['step']}); resume it with --nproc "
                f"{written}, or resume with any --nproc from a checkpoint at an epoch "
                "boundary (train.keep_epoch_checkpoints)")
        return state


def fresh_like(accum: dict[str, Any]) -> dict[str, Any]:
    """Empty epoch sums (a rank other than 0 at an epoch boundary)."""
    return {"loss_sums": {}, "correct": 0, "seen": 0,
            "epoch_seconds": accum.get("epoch_seconds", 0.0)}

"""Run by torchrun with 2 ranks from tests/train/test_ddp.py: every collective helper of
``edgedistill.train.distributed``, many times, recording the tensors each hands to gloo;
when a helper returns, gloo must hold none of them (reference count 1: ours). A tensor
gloo's worker thread frees itself takes the GIL, and at interpreter teardown that kills
the rank with SIGABRT after its work is done."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from edgedistill.train import distributed as d

handed: list[torch.Tensor] = []


def recording(op):
    def call(*args, **kwargs):
        for a in args:
            handed.extend(a if isinstance(a, list) else [a])
        return op(*args, **kwargs)
    return call


def main(out: str) -> None:
    d.init("cpu")
    for name in ("all_reduce", "all_gather", "broadcast"):
        setattr(dist, name, recording(getattr(dist, name)))
    w = d.world()
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    parallel = d.DataParallel.__new__(d.DataParallel)
    parallel.world = w
    held, results = 0, {}

    def settled(value):
        """``value``, after noting how many references gloo still holds."""
        nonlocal held
        held = max([held] + [t._use_count() - 1 for t in handed])
        handed.clear()
        return value

    for i in range(50):
        results = {
            "gather": settled(d.gather({"rank": w.rank, "i": i, "t": torch.arange(w.rank + i)})),
            "broadcast": settled(d.broadcast(["from", w.rank, i])),
            "sums": settled(d._sums([w.rank + 1.0, i]).tolist())}
        settled(d.barrier())
        settled(parallel.sync_buffers(net))
        assert not handed
    Path(out, f"rank{w.rank}.json").write_text(json.dumps({
        "still_held": held, "kept": len(d._kept), "broadcast": results["broadcast"],
        "sums": results["sums"],
        "gather": [[g["rank"], g["i"], g["t"].tolist()] for g in results["gather"]]}))


if __name__ == "__main__":
    main(sys.argv[1])

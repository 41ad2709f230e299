"""Which convolutions crash torch's CPU backward in channels_last, and what the per-layer
NCHW fallback of ``train/layout.py`` costs in training speed.

    .venv/bin/python -m benchmarks.layout_safety grid [--layout raw|auto] [--repeats 5]
        [--debug-malloc] [--channels 1-32] [--sizes 16,28,32,56,64,112] [--json F]
    .venv/bin/python -m benchmarks.layout_safety speed [--threads 1] [--rounds 3]

``grid`` runs forward + backward of one ``Conv2d`` per cell (in channels x out 16 x
kernel x stride x image size x batch), each cell ``--repeats`` times, every time in a
fresh forked process, since the crash kills the process and does not come every time.
``--layout raw`` is plain channels_last (the crash map), ``auto`` is what the Trainer
does. ``--debug-malloc`` re-runs itself under glibc's checking allocator, which aborts
on heap damage that a plain run survives. ``speed`` times a training step of resnet20
at width 1 and 0.5 on 28 and 64 px in NCHW, raw channels_last (in its own process, as it
may crash) and the fallback at several channel bounds, interleaved in one process.
"""

from __future__ import annotations

import argparse
import copy
import ctypes.util
import itertools
import json
import multiprocessing as mp
import os
import signal
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from benchmarks.common import header, timed_steps
from edgedistill.report.markdown import markdown_table
from edgedistill.train.device import to_layout

FORK = mp.get_context("fork")
# the per-layer fallback at the channel bound that the grid found (16), the default (32),
# and for every strided 1x1 conv
FALLBACKS = {"fallback, in/groups < 16": 16, "fallback, in/groups < 32 (default)": 32,
             "fallback, every strided 1x1": 10**9}


def conv_cell(cin: int, k: int, stride: int, size: int, batch: int, layout: str,
              reps: int) -> None:
    conv = torch.nn.Conv2d(cin, 16, k, stride=stride, padding=k // 2)
    conv = conv.to(memory_format=torch.channels_last) if layout == "raw" \
        else to_layout(conv, torch.device("cpu"), layout)
    x = torch.randn(batch, cin, size, size).to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    for _ in range(reps):
        conv(x).sum().backward()


def in_child(fn, *args) -> int:
    """``fn(*args)`` in a forked process; its exit code (negative: killed by that signal)."""
    def target():
        fn(*args)
        os._exit(0)
    p = FORK.Process(target=target)
    p.start()
    p.join(300)
    if p.exitcode is None:
        p.kill()
        p.join()
    return p.exitcode


def signal_name(code: int) -> str:
    return signal.Signals(-code).name if code < 0 else f"exit {code}"


def grid(args) -> None:
    cells = list(itertools.product(parse_ints(args.channels), parse_ints(args.kernels),
                                   parse_ints(args.strides), parse_ints(args.sizes),
                                   parse_ints(args.batches)))
    tic = time.perf_counter()
    crashes = []
    for cell in cells:
        codes = [in_child(conv_cell, *cell, args.layout, args.reps)
                 for _ in range(args.repeats)]
        bad = [signal_name(c) for c in codes if c != 0]
        if bad:
            crashes.append({"in_channels": cell[0], "kernel": cell[1], "stride": cell[2],
                            "size": cell[3], "batch": cell[4], "crashed": len(bad),
                            "of": args.repeats, "how": ",".join(sorted(set(bad)))})
    secs = time.perf_counter() - tic
    result = {"layout": args.layout, "cells": len(cells), "repeats": args.repeats,
              "debug_malloc": bool(os.environ.get("MALLOC_CHECK_")),
              "crashed_cells": len(crashes), "crashes": crashes, "seconds": round(secs, 1)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)
    print(header("python -m benchmarks.layout_safety " + " ".join(sys.argv[1:])))
    print(f"{len(cells)} cells x {args.repeats} fresh processes, {args.reps} backward "
          f"passes each, layout {args.layout}, debug malloc {result['debug_malloc']}: "
          f"{len(crashes)} cells crashed at least once ({secs:.0f} s)\n")
    if crashes:
        print(markdown_table(crashes))
        for key in ("in_channels", "kernel", "stride", "size", "batch"):
            print(f"crashed {key}: {sorted({c[key] for c in crashes})}")


def parse_ints(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def train_steps(model_width: float, size: int, batch: int, variants: list[str], steps: int,
                rounds: int, conn) -> None:
    """Median ms per training step of each variant, interleaved rounds, sent on ``conn``."""
    from edgedistill.models import create_model
    from edgedistill.train import layout

    base = create_model("resnet20", num_classes=3, in_channels=3, width=model_width)
    nets = {}
    for name in variants:
        net = copy.deepcopy(base)
        if name == "contiguous":
            nets[name] = to_layout(net, torch.device("cpu"), "contiguous")
        elif name == "channels_last (raw)":
            nets[name] = net.to(memory_format=torch.channels_last)
        else:
            layout.NCHW_BELOW_IN_CHANNELS = FALLBACKS[name]
            nets[name] = to_layout(net, torch.device("cpu"), "auto")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=gen)
    y = torch.randint(0, 3, (batch,), generator=gen)
    opts = {n: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for n, m in nets.items()}
    times: dict[str, list[float]] = {n: [] for n in nets}
    for _ in range(rounds):
        for name, net in nets.items():
            def step(net=net, opt=opts[name]):
                loss = F.cross_entropy(net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            times[name].append(timed_steps(step, 1, steps) / steps * 1000)
    conn.send({n: statistics.median(t) for n, t in times.items()})


def speed(args) -> None:
    torch.set_num_threads(args.threads)
    hybrids = list(FALLBACKS)
    rows = []
    for width, size in itertools.product((1.0, 0.5), (28, 64)):
        recv, send = FORK.Pipe(duplex=False)
        raw = in_child(train_steps, width, size, args.batch, ["channels_last (raw)"],
                       args.steps, 1, send)
        if raw == 0:
            recv.recv()
        variants = ["contiguous"] + (["channels_last (raw)"] if raw == 0 else []) + hybrids
        code = in_child(train_steps, width, size, args.batch, variants, args.steps,
                        args.rounds, send)
        if code != 0:
            raise SystemExit(f"the interleaved run died: {signal_name(code)}")
        ms = recv.recv()
        for name, value in ms.items():
            rows.append({"model": f"resnet20 w{width:g}", "px": size, "layout": name,
                         "ms/step": round(value, 1),
                         "vs contiguous": f"{ms['contiguous'] / value:.2f}x"})
        if raw != 0:
            rows.append({"model": f"resnet20 w{width:g}", "px": size,
                         "layout": "channels_last (raw)",
                         "ms/step": f"crashed ({signal_name(raw)})", "vs contiguous": "-"})
    print(header("python -m benchmarks.layout_safety " + " ".join(sys.argv[1:])))
    print(f"Training step (forward, cross-entropy, backward, SGD) at batch {args.batch}, "
          f"median of {args.rounds} interleaved rounds of {args.steps} steps; raw "
          "channels_last first tried alone in a fresh process. A fallback runs the strided "
          "1x1 convs it names in NCHW, the rest in channels_last.\n")
    print(markdown_table(rows))


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grid")
    g.add_argument("--layout", default="raw", choices=["raw", "auto", "channels_last"])
    g.add_argument("--channels", default="1-32")
    g.add_argument("--kernels", default="1,3")
    g.add_argument("--strides", default="1,2")
    g.add_argument("--sizes", default="16,28,32,56,64,112")
    g.add_argument("--batches", default="8,32")
    g.add_argument("--repeats", type=int, default=1)
    g.add_argument("--reps", type=int, default=3)
    g.add_argument("--debug-malloc", action="store_true")
    g.add_argument("--json")
    s = sub.add_parser("speed")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--batch", type=int, default=32)
    s.add_argument("--steps", type=int, default=5)
    s.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if getattr(args, "debug_malloc", False) and not os.environ.get("MALLOC_CHECK_"):
        lib = ctypes.util.find_library("c_malloc_debug")
        if lib is None:
            raise SystemExit("--debug-malloc needs glibc's libc_malloc_debug.so (glibc >= 2.34)")
        env = {**os.environ, "LD_PRELOAD": lib, "MALLOC_CHECK_": "3"}
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.layout_safety",
                                   *sys.argv[1:]], env)
    torch.set_num_threads(1 if args.command == "grid" else args.threads)
    grid(args) if args.command == "grid" else speed(args)


if __name__ == "__main__":
    main()

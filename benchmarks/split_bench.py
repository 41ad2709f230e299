"""Split computing benchmark: the HND bottleneck table, the plan, and the plan checked
against measured runs of a real server over a shaped link.

1. ``split train`` the config (skipped when OUT already holds a finished run);
2. start ``split serve`` on 127.0.0.1 in its own process (ONNX Runtime tail); the
   fixed cost per request (HTTP stacks, client, server event loop) is calibrated on
   real split and classify requests over a link that costs nothing;
3. plan with a device ``--device-slowdown`` times slower than this host;
4. at each ``--validate`` bandwidth, send ``--requests`` test images per option with
   the client-side shaper (``Link``) and the same device emulation, and print planned
   against measured median latency, and the fastest option measured;
5. plan again: the emulated device is k times *this host now*, so a change of the
   host's speed between plan and run (other jobs on a shared machine) shows up k-fold
   in the measured device time. The second plan, calibrated right after the run,
   shows how far the host moved; errors are against the first plan.

    .venv/bin/python benchmarks/split_bench.py --teacher runs/teacher_resnet20 \\
        --set data.limit_train=10000 --out runs/split_bench
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import numpy as np
import torch

from edgedistill.config import load_config
from edgedistill.config.split import SplitExperiment
from edgedistill.report.markdown import markdown_table
from edgedistill.split.client import SplitClient
from edgedistill.split.images import normalize_uint8
from edgedistill.split.measure import health_rtt_ms, run_plan
from edgedistill.split.model import read_meta
from edgedistill.split.planner import ComputeProfile
from edgedistill.split.shaper import Link, precise_sleep
from edgedistill.split.train import load_split_data, run_split_train


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/split/fashion_mnist_resnet20.yaml")
    p.add_argument("--teacher", help="teacher source (default: the config's)")
    p.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    p.add_argument("--out", default="runs/split_bench")
    p.add_argument("--device-slowdown", type=float, default=10.0)
    p.add_argument("--delay-ms", type=float, default=5.0, help="one-way link delay")
    p.add_argument("--sweep", default="0.1,0.2,0.5,1,2,5,10,20,50,100")
    p.add_argument("--validate", default="0.2,1,10", help="Mbit/s of the measured runs")
    p.add_argument("--requests", type=int, default=30)
    p.add_argument("--local-model", action="append", default=[])
    p.add_argument("--bottlenecks", default="chosen", help="'chosen', 'all' or names")
    return p.parse_args()


def start_server(run: Path, token_file: Path, bottleneck: str | None = None
                 ) -> tuple[subprocess.Popen, str]:
    """A ``split serve`` process; a server runs the tail of one bottleneck."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    extra = ["--bottleneck", bottleneck] if bottleneck else []
    proc = subprocess.Popen([sys.executable, "-m", "edgedistill.split.cli", "serve", str(run),
                             "--port", str(port), "--token-file", str(token_file), *extra],
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not start")


class LocalTeacher:
    """Measured 'teacher on device': ONNX Runtime at batch 1, lasting ``slowdown`` times
    its CPU time here, as ``SplitClient`` emulates device steps."""

    def __init__(self, run: Path, slowdown: float):
        from edgedistill.export.onnx import session

        self.meta = read_meta(run)
        self.sess = session(run / "export" / "teacher.onnx", threads=1)
        self.slowdown = slowdown

    def __call__(self, image: np.ndarray) -> float:
        from edgedistill.export.onnx import run_session

        tic, cpu = time.perf_counter(), time.thread_time()
        run_session(self.sess, normalize_uint8(image[None], self.meta["mean"], self.meta["std"]))
        device_s = (time.thread_time() - cpu) * self.slowdown
        precise_sleep(device_s - (time.perf_counter() - tic))
        return (time.perf_counter() - tic) * 1e3


def measure(run: Path, url: str, token: str, images: np.ndarray, mbits: list[float],
            delay_ms: float, slowdown: float, bottlenecks: dict[str, str]) -> dict:
    """Median end-to-end latency per (bandwidth, option). Requests go round robin over
    all of them, so a burst of load on this shared host hits every option alike."""
    calls = {}
    clients = []
    for mbit in mbits:
        calls[(mbit, "teacher on device")] = LocalTeacher(run, slowdown)
        for name, server in bottlenecks.items():
            client = SplitClient(run, server, token, name, link=Link(mbit, delay_ms),
                                 device_slowdown=slowdown)
            clients.append(client)
            calls[(mbit, f"split {name}")] = (
                lambda im, c=client: c.infer(im[None])["timing_ms"]["total"])
        client = SplitClient(run, url, token, link=Link(mbit, delay_ms), device_slowdown=slowdown)
        clients.append(client)
        for fmt in ("png", "jpeg95", "jpeg75"):
            calls[(mbit, f"send {fmt}")] = (
                lambda im, c=client, f=fmt: c.classify(im, f)["timing_ms"]["total"])
    times: dict = {key: [] for key in calls}
    try:
        for i, image in enumerate(images):
            for key, call in calls.items():
                ms = call(image)
                if i:  # the first round warms connections and sessions up
                    times[key].append(ms)
    finally:
        for client in clients:
            client.close()
    return {key: statistics.median(v) for key, v in times.items()}


def main() -> None:
    args = parse()
    torch.set_num_threads(1)
    overrides = list(args.set) + ([f"teacher.source={args.teacher}"] if args.teacher else [])
    cfg = load_config(args.config, SplitExperiment, overrides)
    run = Path(args.out)
    tic = time.perf_counter()
    if not (run / "split.json").exists():
        run_split_train(cfg, run, resume=run.exists())
    train_seconds = time.perf_counter() - tic
    meta = read_meta(run)
    print((run / "table.md").read_text())
    names = {"chosen": [meta["chosen"]], "all": [b["name"] for b in meta["bottlenecks"]]}.get(
        args.bottlenecks, args.bottlenecks.split(","))
    token_file = run / "bench.token"
    token_file.write_text(os.urandom(24).hex())
    token_file.chmod(0o600)
    proc, url = start_server(run, token_file)
    others = {name: start_server(run, token_file, name) for name in names
              if name != meta["chosen"]}  # one server per extra bottleneck
    servers = {name: others[name][1] if name in others else url for name in names}
    token = token_file.read_text()
    try:
        health = health_rtt_ms(url)
        device = ComputeProfile(name=f"host/{args.device_slowdown:g}",
                                slowdown=args.device_slowdown)
        sweep = sorted({*map(float, args.sweep.split(",")), *map(float,
                                                                  args.validate.split(","))})

        def calibrated_plan(out: Path) -> dict:
            return run_plan(run, device, ComputeProfile(), sweep, args.local_model,
                            rtt_ms=2 * args.delay_ms, server_url=url, token=token, out=out)

        result = calibrated_plan(run / "plan")
        calibration = result["measured"]["request_overhead"]
        rpc = calibration["overhead_ms"]
        print(Path(result["markdown"]).read_text())
        _, test = load_split_data(cfg)
        images = test.images.numpy()[:args.requests]
        planned = {r["mbit"]: r["latency_ms"] for r in result["rows"]}
        mbits = [float(b) for b in args.validate.split(",")]
        load = os.getloadavg()[0]
        got = measure(run, url, token, images, mbits, args.delay_ms, args.device_slowdown,
                      servers)
        load = max(load, os.getloadavg()[0])
        after = calibrated_plan(run / "plan_after")
        replanned = {r["mbit"]: r["latency_ms"] for r in after["rows"]}
        rows = []
        for mbit in mbits:
            mine = {option: ms for (b, option), ms in got.items() if b == mbit}
            fastest = min(mine, key=mine.get)
            for option, ms in mine.items():
                plan_ms = planned[mbit][option]
                rows.append({"Mbit/s": f"{mbit:g}", "option": option,
                             "planned ms": f"{plan_ms:.2f}", "measured ms": f"{ms:.2f}",
                             "error %": f"{100 * (plan_ms - ms) / ms:+.1f}",
                             "planned after ms": f"{replanned[mbit][option]:.2f}",
                             "fastest measured": "yes" if option == fastest else ""})
        step = [p["measured"]["teacher"]["device_step_ms"] for p in (result, after)]
    finally:
        for p in [proc, *(p for p, _ in others.values())]:
            p.terminate()
            p.wait(timeout=30)
    worst = max(abs(float(r["error %"])) for r in rows)
    print(f"# planned vs measured (device {args.device_slowdown:g}x slower than this host, "
          f"delay {args.delay_ms} ms each way, request overhead {rpc:.2f} ms calibrated on "
          f"{calibration['requests']} split/classify requests (split {calibration['split_ms']:.2f}"
          f", classify {calibration['classify_ms']:.2f}; GET /health: {health:.2f} ms), "
          f"{args.requests} requests per point, load average up to {load:.1f} on "
          f"{os.cpu_count()} cores; host teacher step {step[0]:.3f} ms before the run, "
          f"{step[1]:.3f} ms after ({100 * (step[1] / step[0] - 1):+.1f}%); "
          f"largest error {worst:.1f}%)\n")
    print(markdown_table(rows))
    report = {"date": date.today().isoformat(), "argv": sys.argv, "train_seconds": train_seconds,
              "rpc_overhead_ms": rpc, "calibration": calibration,
              "calibration_after": after["measured"]["request_overhead"],
              "teacher_step_ms": {"before": step[0], "after": step[1]},
              "health_rtt_ms": health, "load_average": load, "max_abs_error_pct": worst,
              "validation": rows, "plan": result["rows"], "plan_after": after["rows"]}
    (run / "bench.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

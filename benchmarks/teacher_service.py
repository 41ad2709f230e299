"""The teacher service measured: sharing, autoscaling under changing demand, replica kills.

Every student is its own process (as real student jobs are) training resnet8 (width 0.5)
with CE + KD (T=4) from the shipped resnet56 Fashion-MNIST teacher through
``PoolSource``, on one private Ray instance that this script starts and stops.

* ``share``: two students on one service of 2 replicas, then the same two students
  each with its own pool of 1 replica (same total); images/s per student and total,
  over the time both train.
* ``autoscale``: one student trains alone for a third of ``--autoscale-seconds``, a
  second joins for the next third, then leaves, and the first trains alone for the last
  third. The students are paced: each asks for ``--demand`` (0.65) of what one replica
  answers, re-measured every 5 s from the service's status (the replicas' ms/batch,
  which the busy machine changes several-fold), so one student alone fits in one
  replica and two do not, whatever the load: the pool (autoscale 1..4) has room to grow
  at the join and to shrink at the leave. The service is sampled every 0.5 s: replicas (alive, and alive + starting:
  the autoscaler's target), each student's wait fraction and images/s, plotted to a
  PNG. Reaction times: from the join (the second student's first answer) to the
  autoscaler's decision to grow past the size it held most in the 20 s before, and to
  the new replica answering; from the leave (the service forgetting the student) to
  the decision to shrink below the size held most in the 20 s before it.
* ``kills``: two students train while a replica of the service is SIGKILLed every
  ``--kill-every`` s, 20 times; per student the batches lost (a step never served) and
  duplicated (a reply accepted twice), and the stall per kill (the longest gap between
  steps in the 5 s after a kill, minus the median gap).

    nice -n 10 .venv/bin/python -m benchmarks.teacher_service [--part share autoscale kills]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEACHER = "zoo:resnet56-fashion_mnist"
DATA = {"dataset": "fashion_mnist", "limit_train": 2048, "limit_test": 64, "batch_size": 64}
REPLICA = {"backend": "torch", "num_cpus": 0.5}
PNG = ROOT / "benchmarks" / "teacher_service_autoscale.png"


# ---- one student, in its own process ----
def student_main(args) -> None:
    import torch

    from edgedistill import api
    from edgedistill.config import DataConfig, LossConfig, PoolConfig
    from edgedistill.data import BatchPipeline
    from edgedistill.distill.distiller import Distiller
    from edgedistill.elastic import PoolSource
    from edgedistill.models import create_model

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    train, _, _ = api.build_splits(DataConfig.model_validate(DATA), 0)
    pipe = BatchPipeline(train, DATA["batch_size"], train=True, seed=args.seed,
                         augment=train.augment)
    pool = PoolConfig.model_validate({"service": args.service, "address": args.address,
                                      "replicas": [REPLICA] * args.replicas,
                                      "max_in_flight": 2})
    cpu = torch.device("cpu")
    src = PoolSource(TEACHER, pool, cpu, log=lambda line: print(line, file=sys.stderr))
    student = create_model("resnet8", num_classes=10, in_channels=1, width=0.5)
    losses = [LossConfig(name="ce", weight=0.5),
              LossConfig(name="kd", weight=0.5, params={"temperature": 4.0})]
    distiller = Distiller(student, api.load_model(TEACHER), src, losses)
    distiller.setup(pipe, pipe.batch(0, 0))
    opt = torch.optim.SGD(distiller.parameters(), lr=0.05)
    times, keys = [], []
    stop_at = time.time() + args.seconds
    due = time.time()
    pace, paced_at, paces = 0.0, 0.0, []
    stop_file = Path(args.stop_file) if args.stop_file else None

    def stopped() -> bool:
        return time.time() >= stop_at or (stop_file is not None and stop_file.exists())

    epoch = 0
    while not stopped():
        for batch in pipe.epoch(epoch):
            _, terms = distiller(batch)
            opt.zero_grad()
            sum(terms.values()).backward()
            opt.step()
            times.append(time.time())
            keys.append([batch.epoch, batch.step])
            if args.demand > 0:  # a slower student: --demand of one replica's speed
                if time.time() - paced_at > 5:
                    ms = [r["service_ms"] for r in src.pool.health()
                          if r["state"] == "alive" and r["service_ms"]]
                    if ms:
                        pace, paced_at = args.demand * 1e3 / statistics.median(ms), time.time()
                        paces.append([paced_at, pace])
                if pace > 0:  # no faster than that, and no bursts to catch up
                    due = max(due + 1 / pace, time.time())
                    time.sleep(max(0.0, due - time.time()))
            if stopped():
                break
        epoch += 1
    ledger = src.accounting()
    expected = [(0, 0)] + [tuple(k) for k in keys]  # setup's probe, then the steps
    out = {"times": times, "keys": keys, "batch": DATA["batch_size"], "paces": paces,
           "lost": sum(k not in set(ledger.served) for k in expected),
           "in_order": ledger.served == expected,
           "duplicated": sum(n - 1 for n in ledger.accepted.values() if n > 1),
           "resent": getattr(src.pool, "resent", ledger.resent)}
    src.close()
    Path(args.out).write_text(json.dumps(out))


def spawn(address: str, out: Path, seed: int, seconds: float, service: str | None = None,
          replicas: int = 1, stop_file: Path | None = None,
          demand: float = 0.0) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "benchmarks.teacher_service", "student", "--address", address,
           "--out", str(out), "--seed", str(seed), "--seconds", str(seconds),
           "--replicas", str(replicas), "--demand", str(demand),
           *(["--service", service] if service else []),
           *(["--stop-file", str(stop_file)] if stop_file else [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


def finish(procs: list[subprocess.Popen], timeout_s: float) -> None:
    for proc in procs:
        if proc.wait(timeout_s) != 0:
            raise RuntimeError(f"a student exited with {proc.returncode}")


def rate(result: dict, t0: float | None = None, t1: float | None = None) -> float:
    """Images/s over the student's steps (its first step, the warm-up, excluded)."""
    times = [t for t in result["times"][1:] if (t0 is None or t >= t0) and
             (t1 is None or t <= t1)]
    return (len(times) - 1) * result["batch"] / (times[-1] - times[0]) if len(times) > 2 else 0.0


# ---- the parent: Ray, services, measurements ----
def serve(name: str, replicas: int, autoscale: dict | None = None) -> None:
    import torch

    from edgedistill import api
    from edgedistill.config import DataConfig
    from edgedistill.data import BatchPipeline
    from edgedistill.elastic import BatchPlan
    from edgedistill.elastic.service import start_service

    train, _, _ = api.build_splits(DataConfig.model_validate(DATA), 0)
    pipe = BatchPipeline(train, DATA["batch_size"], train=True, seed=0, augment=train.augment,
                         device=torch.device("cpu"))
    pool = {"replicas": [REPLICA] * replicas, "max_in_flight": 2, "deadline_s": 30.0,
            "autoscale": autoscale}
    start_service(name, TEACHER, pool, [], BatchPlan(pipe).inputs, None, student_timeout_s=20)


def status(name: str) -> dict:
    import ray

    from edgedistill.elastic.service import find_service

    return ray.get(find_service(name).status.remote(), timeout=60)


def part_share(address: str, tmp: Path, seconds: float) -> list[str]:
    from edgedistill.elastic.service import stop_service

    rows = []
    serve("share", 2)
    procs = [spawn(address, tmp / f"s{i}.json", i, seconds, "share") for i in range(2)]
    finish(procs, seconds + 300)
    stop_service("share")
    shared = [json.loads((tmp / f"s{i}.json").read_text()) for i in range(2)]
    procs = [spawn(address, tmp / f"o{i}.json", i, seconds, replicas=1) for i in range(2)]
    finish(procs, seconds + 300)
    own = [json.loads((tmp / f"o{i}.json").read_text()) for i in range(2)]
    for label, results in (("one service, 2 replicas", shared),
                           ("own pool each, 1 replica", own)):
        both = (max(r["times"][1] for r in results), min(r["times"][-1] for r in results))
        per = [rate(r, *both) for r in results]  # while both train
        rows.append(f"| {label} | {per[0]:.0f} | {per[1]:.0f} | {sum(per):.0f} | "
                    f"{sum(r['lost'] for r in results)} / "
                    f"{sum(r['duplicated'] for r in results)} |")
    return rows


def wait_attached(name: str, n: int, timeout_s: float = 600) -> float:
    """Wait until ``n`` students have answers from service ``name``; returns the time."""
    deadline = time.time() + timeout_s
    while sum(s["answered"] > 0 for s in status(name)["students"]) < n:
        if time.time() > deadline:
            raise RuntimeError(f"{n} student(s) did not start within {timeout_s:g}s")
        time.sleep(0.5)
    return time.time()


AUTOSCALE = {"min_replicas": 1, "max_replicas": 4, "grow_wait_fraction": 0.1,
             "interval_s": 2.0, "cooldown_s": 3.0}


def part_autoscale(address: str, tmp: Path, seconds: float, demand: float) -> list[str]:
    """Times are from the first student's first answer; join and leave are when the
    service saw the second student's first answer and forgot it (it detached)."""
    from edgedistill.elastic.service import stop_service

    serve("auto", 1, AUTOSCALE)
    stops = [tmp / "stop-a0", tmp / "stop-a1"]
    procs = [spawn(address, tmp / "a0.json", 0, 3600, "auto", stop_file=stops[0],
                   demand=demand)]
    samples, joined, left = [], None, None
    phase = seconds / 3
    try:
        t0 = wait_attached("auto", 1)
        while left is None or time.time() - t0 < left + phase:
            now = time.time() - t0
            if now > 3 * phase + 600:
                raise RuntimeError("the second student did not join and leave in time")
            if len(procs) == 1 and now > phase - 10:  # its start-up takes about 10 s
                procs.append(spawn(address, tmp / "a1.json", 1, 3600, "auto",
                                   stop_file=stops[1], demand=demand))
            info = status("auto")
            answering = [s for s in info["students"] if s["answered"] > 0]
            if joined is None and len(answering) == 2:
                joined = now
            if joined is not None and not stops[1].exists() and now - joined > phase:
                stops[1].touch()
            if stops[1].exists() and left is None and len(info["students"]) == 1:
                left = now
            alive = sum(r["state"] == "alive" for r in info["replicas"])
            starting = sum(r["state"] == "starting" for r in info["replicas"])
            samples.append({"t": now, "replicas": alive, "target": alive + starting,
                            "ms": [r["service_ms"] for r in info["replicas"]
                                   if r["state"] == "alive" and r["service_ms"]],
                            "students": {s["id"]: (s["answered"], s["wait_fraction"])
                                         for s in info["students"]}})
            time.sleep(0.5)
        for stop in stops:
            stop.touch()
        finish(procs, 300)
        events = status("auto")["events"]
    finally:
        stop_service("auto")
    results = [json.loads((tmp / f"a{i}.json").read_text()) for i in range(2)]
    before, during = _settled(samples, joined), _settled(samples, left)
    decided = _first(samples, joined, lambda s: s["target"] > before)
    grown = _first(samples, joined, lambda s: s["replicas"] > before)
    shrunk = _first(samples, left, lambda s: s["target"] < during)
    plot(samples, joined, left, t0, results)
    first = results[0]
    phases = {"alone before": (0, joined), "with the second": (joined, left),
              "alone after": (left, samples[-1]["t"])}
    paces = [p for r in results for _, p in r["paces"]]
    lines = [f"second student joined at {joined:.1f} s, left at {left:.1f} s; each student "
             f"paced at {demand:g} of one replica's speed: {min(paces):.2f} to "
             f"{max(paces):.2f} steps/s ({min(paces) * DATA['batch_size']:.0f} to "
             f"{max(paces) * DATA['batch_size']:.0f} images/s) as the load changed",
             f"reaction to the join: grow decided {_s(decided)} after it, the new replica "
             f"answering {_s(grown)} after it; reaction to the leave: shrink decided "
             f"{_s(shrunk)} after it",
             f"replicas (alive + starting) held most in the 20 s before the join {before}, "
             f"before the leave {during}; "
             f"most in each phase: {[_most(samples, *span) for span in phases.values()]}"]
    for label, (a, b) in phases.items():
        waits = [s["students"][sid][1] for s in samples if a <= s["t"] < b
                 for sid in s["students"] if s["students"][sid][1] is not None]
        ms = [m for s in samples if a <= s["t"] < b for m in s["ms"]]
        lines.append(f"{label}: student 1 {rate(first, t0 + a, t0 + b):.0f} images/s, "
                     f"students' wait fraction mean {_mean(waits)}, replicas alive mean "
                     f"{statistics.mean(s['replicas'] for s in samples if a <= s['t'] < b):.2f}"
                     f", replica ms/batch mean {_mean(ms, '.0f')}")
    lines.append(f"student 2 {rate(results[1]):.0f} images/s; lost / duplicated "
                 f"{sum(r['lost'] for r in results)} / {sum(r['duplicated'] for r in results)}")
    lines.append("replicas each 0.5 s (alive): " + "".join(str(s["replicas"]) for s in samples))
    lines.append("service events (last 5): " + " | ".join(events))
    return lines


def _settled(samples: list[dict], t: float, span_s: float = 20.0) -> int:
    """The replica count (alive + starting) held most in the ``span_s`` before ``t``: a
    brief step just before a join is not the size the pool had settled at."""
    targets = [s["target"] for s in samples if t - span_s <= s["t"] <= t]
    return statistics.mode(targets)


def _first(samples: list[dict], t: float, cond) -> float | None:
    return next((s["t"] - t for s in samples if s["t"] > t and cond(s)), None)


def _most(samples: list[dict], a: float, b: float) -> int:
    return max(s["target"] for s in samples if a <= s["t"] < b)


def _mean(xs: list[float], fmt: str = ".2f") -> str:
    return "-" if not xs else format(statistics.mean(xs), fmt)


def _s(x) -> str:
    return "never" if x is None else f"{x:.1f} s"


def _replicas_at(samples: list[dict], t: float) -> int:
    return [s for s in samples if s["t"] <= t][-1]["replicas"]


def plot(samples: list[dict], joined: float, left: float, t0: float, results: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
    ts = [s["t"] for s in samples]
    axes[0].step(ts, [s["target"] for s in samples], where="post", ls="--",
                 label="alive + starting")
    axes[0].step(ts, [s["replicas"] for s in samples], where="post", label="alive")
    axes[0].set_ylabel("replicas")
    axes[0].set_ylim(0, AUTOSCALE["max_replicas"] + 0.5)
    axes[0].legend()
    ids = sorted({sid for s in samples for sid in s["students"]})
    for n, sid in enumerate(ids):
        pts = [(s["t"], s["students"][sid][1]) for s in samples
               if sid in s["students"] and s["students"][sid][1] is not None]
        axes[1].plot([p[0] for p in pts], [p[1] for p in pts], label=f"student {n + 1}")
    axes[1].set_ylabel("wait fraction")
    axes[1].legend()
    for n, result in enumerate(results):
        times = [t - t0 for t in result["times"]]
        mids, rates = [], []
        for a in range(0, int(times[-1]) if times else 0, 5):
            inside = [t for t in times if a <= t < a + 5]
            if inside:
                mids.append(a + 2.5)
                rates.append(len(inside) * result["batch"] / 5)
        axes[2].plot(mids, rates, label=f"student {n + 1}")
    axes[2].set_ylabel("images/s (5 s bins)")
    axes[2].set_xlabel("seconds")
    axes[2].legend()
    for ax in axes:
        ax.axvline(joined, color="grey", ls="--")
        ax.axvline(left, color="grey", ls=":")
    fig.suptitle("teacher service: a second student joins (--) and leaves (:)")
    fig.tight_layout()
    fig.savefig(PNG, dpi=90)


def part_kills(address: str, tmp: Path, kills: int, every_s: float) -> list[str]:
    from edgedistill.elastic.service import stop_service

    serve("kills", 2)
    stop = tmp / "stop-kills"
    procs = [spawn(address, tmp / f"k{i}.json", i, 3600, "kills", stop_file=stop)
             for i in range(2)]
    killed_at = []
    try:
        wait_attached("kills", 2)
        while len(killed_at) < kills and all(p.poll() is None for p in procs):
            alive = [r for r in status("kills")["replicas"] if r["state"] == "alive"]
            if alive:
                os.kill(alive[0]["pid"], signal.SIGKILL)
                killed_at.append(time.time())
            time.sleep(every_s)
        time.sleep(5)  # the last kill's stall is measured too
        stop.touch()
        finish(procs, 300)
        restarts = status("kills")["restarts"]
    finally:
        stop_service("kills")
    rows = []
    for n in range(2):
        r = json.loads((tmp / f"k{n}.json").read_text())
        gaps = [b - a for a, b in zip(r["times"], r["times"][1:], strict=False)]
        median = statistics.median(gaps)
        stalls = [max([b - a for a, b in zip(r["times"], r["times"][1:], strict=False)
                       if k <= b <= k + 5] or [median]) - median for k in killed_at]
        rows.append(f"| student {n + 1} | {len(r['keys'])} | {r['lost']} | {r['duplicated']} "
                    f"| {r['resent']} | {statistics.mean(stalls):.2f} | {max(stalls):.2f} |")
    rows.append(f"{len(killed_at)} kills, {restarts} replica restarts")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd")
    st = sub.add_parser("student")
    st.add_argument("--address", required=True)
    st.add_argument("--out", required=True)
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--seconds", type=float, default=30)
    st.add_argument("--replicas", type=int, default=1)
    st.add_argument("--service", default=None)
    st.add_argument("--stop-file", default=None)
    st.add_argument("--demand", type=float, default=0.0,
                    help="ask for this fraction of one replica's speed (0: no limit)")
    parser.add_argument("--part", nargs="*", default=["share", "autoscale", "kills"])
    parser.add_argument("--seconds", type=float, default=40, help="per share run")
    parser.add_argument("--autoscale-seconds", type=float, default=180,
                        help="alone, with the second student, alone again: a third each")
    parser.add_argument("--demand", type=float, default=0.65,
                        help="autoscale: each student's demand, in replicas")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--kill-every", type=float, default=4.0)
    parser.add_argument("--cpus", type=int, default=3, help="Ray's logical CPUs")
    args = parser.parse_args()
    if args.cmd == "student":
        student_main(args)
        return
    import ray

    folder = Path(tempfile.mkdtemp(prefix="edb", dir="/tmp"))
    try:
        ctx = ray.init(address="local", num_cpus=args.cpus, include_dashboard=False,
                       log_to_driver=False, _temp_dir=str(folder / "r"))
        address = ctx.address_info["gcs_address"]
        if "share" in args.part:
            print("| setup | student 1 img/s | student 2 img/s | total img/s | lost / dup |")
            print("| --- | --- | --- | --- | --- |")
            print("\n".join(part_share(address, folder, args.seconds)), flush=True)
        if "autoscale" in args.part:
            print("\n".join(part_autoscale(address, folder, args.autoscale_seconds,
                                           args.demand)), flush=True)
            print(f"plot: {PNG.relative_to(ROOT)}")
        if "kills" in args.part:
            print("| student | steps | lost | duplicated | re-sent | stall/kill mean s | max s |")
            print("| --- | --- | --- | --- | --- | --- | --- |")
            print("\n".join(part_kills(address, folder, args.kills, args.kill_every)),
                  flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

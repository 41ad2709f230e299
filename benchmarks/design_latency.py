"""Latency-model error on design runs: run the student search for several teachers, export
a sample of each run's candidates, time them in ONNX Runtime together with the profile's
benchmarks, fit the profile, and print predicted vs measured.

    .venv/bin/python -m benchmarks.design_latency [--threads 1] [--sample 12] \
        [--profile configs/devices/this_machine.yaml] [--save PATH]

Budgets are set so that every candidate fits: the point is the prediction, not the
choice. Everything is timed by ``design/measure.py`` (pinned, round-robin, fastest call
per round) in two passes; the profile's benchmarks and the candidates share the rounds
of each pass, so a slow spell on a shared machine hits both alike, and the two passes'
disagreement on the candidates is the measurement noise printed next to the error.
With --profile the given profile is used as it is and only the candidates are timed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import header
from edgedistill import api
from edgedistill.design.latency import fit
from edgedistill.design.measure import (
    ROUNDS,
    candidate_sessions,
    graph_session,
    latency_ms,
    pick_sample,
    pinned,
    time_interleaved,
)
from edgedistill.design.microbench import Sample, graphs
from edgedistill.design.netbench import networks
from edgedistill.design.profiles import DeviceProfile, load_profile, save_profile
from edgedistill.design.search import ops_of, search
from edgedistill.models import create_model
from edgedistill.report.markdown import markdown_table

TEACHERS = ("zoo:resnet20-fashion_mnist", "resnet56", "wrn_16_2", "mobilenetv2")
SHAPE = (1, 1, 28, 28)


def sampled_candidates(n: int) -> list[tuple[str, object]]:
    """(teacher, candidate) for ``n`` candidates per teacher, spread over FLOPs."""
    spread = DeviceProfile(storage_bytes=10 ** 12, flops_per_s=1e9)
    out = []
    for source in TEACHERS:
        teacher = api.load_model(source) if source.startswith("zoo:") else create_model(source)
        design = search(teacher, source, SHAPE[1:], spread)
        out += [(source, c) for c in pick_sample(design.candidates, design.chosen, n)]
    return out


def pct(values: list[float], q: float) -> float:
    return 100 * float(np.percentile(values, q, method="lower"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sample", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds per pass")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--save", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tic = time.perf_counter()
    sample = sampled_candidates(args.sample)
    bench = [] if args.profile else [*graphs(1), *networks(1)]
    with pinned(args.threads):
        calls = [graph_session(m.SerializeToString(), args.threads) for _, m, _ in bench]
        calls += candidate_sessions([c for _, c in sample], SHAPE, args.threads,
                                    Path("runs/bench_design_latency"))
        passes = [time_interleaved(calls, args.rounds) for _ in range(2)]
    times = [a + b for a, b in zip(*passes, strict=True)]
    if args.profile:
        profile = load_profile(args.profile)
    else:
        samples = [Sample(name, tuple(ops), latency_ms(t), name.startswith("net_"))
                   for (name, _, ops), t in zip(bench, times[:len(bench)], strict=True)]
        model = fit(samples, args.threads, 1)
        profile = DeviceProfile(name="this-machine", threads=args.threads, latency_model=model,
                                source=f"measured by benchmarks/design_latency.py on "
                                       f"{model.measured_on}, {model.runtime}, {model.date}")
        if args.save:
            save_profile(profile, args.save)
    model = profile.latency_model
    print(header(f"python -m benchmarks.design_latency --threads {args.threads} --sample "
                 f"{args.sample}" + (f" --profile {args.profile}" if args.profile else "")))
    print(f"profile: {model.benchmarks} benchmarks, fit error on them "
          f"{100 * model.fit_median_error:.1f}%, channel block {model.channel_block}\n")
    rows, errors, noise, per_teacher = [], [], [], {}
    first, second = (p[len(bench):] for p in passes)
    for (source, c), t, a, b in zip(sample, times[len(bench):], first, second, strict=True):
        c.measured_ms, c.latency_ms = latency_ms(t), profile.predict_ms(list(ops_of(c.spec, SHAPE)))
        error = (c.latency_ms - c.measured_ms) / c.measured_ms
        errors.append(abs(error))
        noise.append(abs(latency_ms(a) - latency_ms(b)) / min(latency_ms(a), latency_ms(b)))
        per_teacher.setdefault(source, []).append(abs(error))
        rows.append({"teacher": source, "candidate": c.name, "predicted_ms": c.latency_ms,
                     "measured_ms": c.measured_ms, "error": f"{100 * error:+.1f}%"})
    for source, errs in per_teacher.items():
        print(f"{source}: {len(errs)} measured, median |error| "
              f"{100 * statistics.median(errs):.1f}%, max {100 * max(errs):.1f}%")
    print()
    print(markdown_table(rows))
    print(f"All {len(errors)} measured candidates: median |error| "
          f"{100 * statistics.median(errors):.1f}%, 90th percentile {pct(errors, 90):.1f}%, "
          f"max {100 * max(errors):.1f}%; within 10%: "
          f"{100 * sum(e <= 0.1 for e in errors) / len(errors):.0f}%  "
          f"(total {time.perf_counter() - tic:.0f} s)")
    print(f"Measurement noise: the two passes disagree by a median "
          f"{100 * statistics.median(noise):.1f}%, 90th percentile {pct(noise, 90):.1f}%, max "
          f"{100 * max(noise):.1f}%; the numbers above combine both passes' rounds.")


if __name__ == "__main__":
    main()

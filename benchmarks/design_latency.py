"""Latency-model error on design runs: profile this machine with the ONNX Runtime
micro-benchmarks, run the student search for several teachers, export and time a sample
of each run's candidates, and print predicted vs measured with the median error.

    .venv/bin/python -m benchmarks.design_latency [--threads 1] [--sample 12] \
        [--profile configs/devices/this_machine.yaml] [--save PATH]

Without --profile the machine is profiled first (about 150 graphs). Budgets are set so
that every candidate fits: the point is the prediction, not the choice. Each sample is
measured in two passes; their difference shows how noisy this machine is.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import header
from edgedistill import api
from edgedistill.design.latency import profile_latency
from edgedistill.design.measure import measure_candidates, pick_sample
from edgedistill.design.profiles import DeviceProfile, load_profile, save_profile
from edgedistill.design.search import search
from edgedistill.models import create_model
from edgedistill.report.markdown import markdown_table

TEACHERS = ("zoo:resnet20-fashion_mnist", "resnet56", "wrn_16_2", "mobilenetv2")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sample", type=int, default=12)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--save", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tic = time.perf_counter()
    if args.profile:
        profile = load_profile(args.profile)
    else:
        model = profile_latency(args.threads)
        profile = DeviceProfile(name="this-machine", threads=args.threads, latency_model=model,
                                source=f"measured by benchmarks/design_latency.py on "
                                       f"{model.measured_on}, {model.runtime}, {model.date}")
        if args.save:
            save_profile(profile, args.save)
    model = profile.latency_model
    print(header(f"python -m benchmarks.design_latency --threads {args.threads} --sample "
                 f"{args.sample}" + (f" --profile {args.profile}" if args.profile else "")))
    print(f"profile: {model.benchmarks} micro-benchmarks, fit error on them "
          f"{100 * model.fit_median_error:.1f}%, channel block {model.channel_block} "
          f"({time.perf_counter() - tic:.0f} s)\n")
    profile = profile.model_copy(update={"storage_bytes": 10 ** 12})
    rows, errors, noise = [], [], []
    for source in TEACHERS:
        teacher = api.load_model(source) if source.startswith("zoo:") else create_model(source)
        design = search(teacher, source, (1, 28, 28), profile)
        sample = pick_sample(design.candidates, design.chosen, args.sample)
        folder = Path("runs/bench_design_latency") / source.replace(":", "_")
        passes = []
        for _ in range(2):
            measure_candidates(sample, (profile.batch, 1, 28, 28), profile.threads, folder)
            passes.append([c.measured_ms for c in sample])
        for c, first, second in zip(sample, *passes, strict=True):
            c.measured_ms = min(first, second)
            noise.append(abs(first - second) / c.measured_ms)
        run_errors = []
        for c in sample:
            error = (c.latency_ms - c.measured_ms) / c.measured_ms
            run_errors.append(abs(error))
            rows.append({"teacher": source, "candidate": c.name, "predicted_ms": c.latency_ms,
                         "measured_ms": c.measured_ms, "error": f"{100 * error:+.1f}%"})
        errors += run_errors
        print(f"{source}: {len(design.candidates)} candidates, {len(sample)} measured, median "
              f"|error| {100 * statistics.median(run_errors):.1f}%")
    print()
    print(markdown_table(rows))
    print(f"All {len(errors)} measured candidates: median |error| "
          f"{100 * statistics.median(errors):.1f}%, 90th percentile "
          f"{100 * sorted(errors)[int(0.9 * (len(errors) - 1))]:.1f}%, max "
          f"{100 * max(errors):.1f}%  (total {time.perf_counter() - tic:.0f} s)")
    print(f"Measurement noise: two measuring passes of the same candidates differ by a median "
          f"{100 * statistics.median(noise):.1f}% (max {100 * max(noise):.1f}%); the faster "
          "pass is used above.")


if __name__ == "__main__":
    main()

"""The design report: budgets, the chosen student, the Pareto front, every rejection with
its reason, and predicted against measured latency."""

from __future__ import annotations

import json
import statistics

from edgedistill.design.latency import machine_name
from edgedistill.design.measure import QUANTILE, REPEATS, ROUNDS
from edgedistill.design.search import Candidate, Design
from edgedistill.design.units import fmt_bytes
from edgedistill.report.markdown import markdown_table


def describes_this_machine(design: Design) -> bool:
    """Prediction errors are only meaningful when the profile was measured here."""
    m = design.profile.latency_model
    return m is not None and m.measured_on == machine_name() and m.threads == \
        design.profile.threads


def prediction_errors(design: Design) -> list[float]:
    return [abs(c.latency_ms - c.measured_ms) / c.measured_ms for c in design.candidates
            if c.measured_ms and c.latency_ms is not None]


def student_config(c: Candidate) -> dict:
    """The ``student:`` block of a distill config that builds this candidate."""
    kwargs = {k: v for k, v in c.spec.items() if k not in ("name", "num_classes", "in_channels")}
    return {"name": c.spec["name"], "kwargs": kwargs}


def constraint_rows(design: Design, c: Candidate) -> list[dict]:
    p = design.profile
    rows = [{"constraint": "storage", "budget": fmt_bytes(p.storage_bytes) if p.storage_bytes
             else "-", "student": fmt_bytes(c.storage_bytes),
             "met": "yes" if not p.storage_bytes or c.storage_bytes <= p.storage_bytes else "NO"},
            {"constraint": "activations", "budget": fmt_bytes(p.activation_bytes)
             if p.activation_bytes else "-", "student": fmt_bytes(c.activation_bytes),
             "met": "yes" if not p.activation_bytes or c.activation_bytes <= p.activation_bytes
             else "NO"}]
    if c.latency_ms is not None:
        ok = not p.max_time_ms or c.latency_ms <= p.max_time_ms
        rows.insert(1, {"constraint": "latency (predicted)",
                        "budget": f"{p.max_time_ms:g} ms" if p.max_time_ms else "-",
                        "student": f"{c.latency_ms:.3f} ms", "met": "yes" if ok else "NO"})
    if c.measured_ms is not None:
        here = describes_this_machine(design)
        ok = not p.max_time_ms or c.measured_ms <= p.max_time_ms
        rows.insert(2, {"constraint": "latency (measured here)",
                        "budget": f"{p.max_time_ms:g} ms" if p.max_time_ms and here else "-",
                        "student": f"{c.measured_ms:.3f} ms",
                        "met": ("yes" if ok else "NO") if here else "n/a (other device)"})
    return rows


def design_markdown(design: Design) -> str:
    p, c = design.profile, design.chosen
    shape = "x".join(map(str, design.input_shape))
    lines = [f"# Student design for `{p.name}`", "",
             f"Teacher `{design.teacher}`; input {shape}, batch {p.batch}, {p.precision} "
             f"weights, {p.threads} thread(s).", "",
             f"Profile: {p.source or '(no source given)'}", "",
             f"Budgets: {'; '.join(p.budgets())}. Latency: {p.latency_method()}.", ""]
    fitting = [x for x in design.candidates if x.fits]
    lines.append(f"{len(design.candidates)} candidates, {len(fitting)} fit every budget.")
    if c is None:
        lines += ["", "**No candidate fits.** The smallest ones and why they fail are below."]
    else:
        lines += ["", f"## Chosen student: {c.name}", "",
                  "The most capable candidate that fits: most FLOPs within every budget "
                  "(ties: fewer parameters).", "",
                  markdown_table(constraint_rows(design, c)),
                  f"{c.params:,} parameters, {c.flops / 1e6:.2f} MFLOPs per input. "
                  f"Distill config: `student: {json.dumps(student_config(c))}`", "",
                  "## Pareto front", "",
                  "Fitting candidates that no other fitting candidate beats on FLOPs, storage "
                  "and predicted latency at once.", "",
                  markdown_table([x.row() for x in design.pareto])]
    rejected = [x for x in design.candidates if not x.fits]
    if rejected:
        lines += ["## Rejected candidates", "",
                  markdown_table([{**x.row(), "why": "; ".join(x.reasons)} for x in rejected],
                                 ["student", "origin", "params", "MFLOPs", "storage",
                                  "activations", "predicted ms", "why"])]
    lines += measurement_section(design)
    return "\n".join(lines) + "\n"


def measurement_section(design: Design) -> list[str]:
    measured = [c for c in design.candidates if c.measured_ms is not None]
    if not measured:
        return []
    p = design.profile
    head = (f"ONNX Runtime on this machine ({machine_name()}), batch {p.batch}, {p.threads} "
            f"pinned thread(s): the fastest of {REPEATS} calls in each of {ROUNDS} interleaved "
            f"rounds, {QUANTILE}th percentile over the rounds.")
    if not describes_this_machine(design):
        rows = [{"student": c.name, "predicted ms (profile's device)": c.latency_ms,
                 "measured ms (this machine)": c.measured_ms} for c in measured]
        return ["## Latency measured here", "", head, "The profile describes another device, "
                "so these numbers are for reference, not a check of the prediction.", "",
                markdown_table(rows)]
    rows = [{"student": c.name, "predicted ms": c.latency_ms, "measured ms": c.measured_ms,
             "error": f"{100 * (c.latency_ms - c.measured_ms) / c.measured_ms:+.1f}%"}
            for c in measured]
    errors = prediction_errors(design)
    return ["## Predicted vs measured latency", "", head, "", markdown_table(rows),
            f"Median absolute prediction error over {len(errors)} candidates: "
            f"**{100 * statistics.median(errors):.1f}%** (max {100 * max(errors):.1f}%)."]

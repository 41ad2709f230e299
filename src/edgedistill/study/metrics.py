"""Per-cell figures and per-(student, technique) statistics of a study.

Gains are paired by seed: a seed fixes the training subset, the augmentation draws and
the student's initial weights for every technique, so ``technique - none`` on the same
seed removes most of the run-to-run noise, and the t interval is taken over those
per-seed differences. A pair is called negative transfer only when the whole interval
lies below zero, so one unlucky seed is not reported as harm.
"""

from __future__ import annotations

import math
from statistics import mean, stdev
from typing import Any

NEGATIVE = "negative transfer"
GAIN = "gain"
UNCLEAR = "no clear difference"


def reach(records: list[dict], target: float | None) -> dict[str, Any]:
    """Epochs (1-based), training seconds and images seen when test accuracy first
    reaches ``target``; all None when it never does (or there is no target)."""
    for r in records:
        if target is not None and r["test_acc"] >= target:
            return {"epochs_to_target": r["epoch"] + 1, "wall_to_target": r["wall_seconds"],
                    "images_to_target": r["images_seen"]}
    return {"epochs_to_target": None, "wall_to_target": None, "images_to_target": None}


def area_under_curve(accs: list[float]) -> float:
    """Area under test accuracy vs epoch, divided by the epochs: the mean accuracy over
    training, 1.0 for a student perfect from the first epoch. Rewards early accuracy."""
    return sum(accs) / len(accs)


def cell_metrics(records: list[dict], target: float | None) -> dict[str, Any]:
    accs = [r["test_acc"] for r in records]
    last = records[-1]
    return {"final_acc": accs[-1], "best_acc": max(accs), "auc": area_under_curve(accs),
            "epochs": len(records), "wall_seconds": last["wall_seconds"],
            "images_seen": last["images_seen"], "agreement": last.get("agreement"),
            "teacher_acc": last.get("teacher_acc"), **reach(records, target)}


def t_quantile(confidence: float, df: int) -> float:
    """Two-sided Student t quantile: the half-width multiplier of a ``confidence`` interval."""
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, df))


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1); std is 0.0 for one value."""
    if not values:
        return None, None
    return mean(values), (stdev(values) if len(values) > 1 else 0.0)


def t_interval(values: list[float], confidence: float) -> dict[str, Any]:
    """Mean, std and t confidence interval of ``values``; bounds None below two values."""
    m, s = mean_std(values)
    n = len(values)
    if n < 2:
        return {"mean": m, "std": s, "low": None, "high": None, "n": n}
    half = t_quantile(confidence, n - 1) * s / math.sqrt(n)
    return {"mean": m, "std": s, "low": m - half, "high": m + half, "n": n}


def verdict(interval: dict[str, Any]) -> str | None:
    """``negative transfer`` when the whole interval is below zero, ``gain`` when above."""
    if interval["low"] is None:
        return None
    if interval["high"] < 0:
        return NEGATIVE
    if interval["low"] > 0:
        return GAIN
    return UNCLEAR


def censored_epochs(cell: dict[str, Any]) -> int:
    """Epochs to target, a cell that never reached it counted as one epoch past its end
    (right-censored at the earliest it could have). A saving is then understated when the
    scratch cell did not reach the target and overstated when the technique's did not; the
    report counts such cells (``censored``)."""
    reached = cell["epochs_to_target"]
    return reached if reached is not None else cell["epochs"] + 1


def _ratio(base: float | None, value: float | None) -> float | None:
    return base / value if base and value else None


def group_stats(cells: list[dict], confidence: float) -> list[dict[str, Any]]:
    """One row per (student, technique): mean/std of every figure, the paired gain over
    ``none`` with its interval and verdict, and the speed-up to target."""
    keys = list(dict.fromkeys((c["student"], c["technique"]) for c in cells))
    by_key = {k: [c for c in cells if (c["student"], c["technique"]) == k] for k in keys}
    rows = []
    for student, technique in keys:
        group = by_key[(student, technique)]
        base = {c["seed"]: c for c in by_key.get((student, "none"), [])}
        row: dict[str, Any] = {"student": student, "technique": technique,
                               "student_model": group[0].get("student_model"),
                               "seeds": len(group)}
        for name in ("final_acc", "best_acc", "auc", "wall_seconds", "agreement"):
            values = [c[name] for c in group if c.get(name) is not None]
            row[f"{name}_mean"], row[f"{name}_std"] = mean_std(values)
        for name in ("epochs_to_target", "wall_to_target", "images_to_target"):
            row[f"{name}_mean"] = mean_std([c[name] for c in group if c[name] is not None])[0]
        row["reached"] = sum(c["epochs_to_target"] is not None for c in group)
        row["target"] = group[0].get("target")
        if technique != "none":
            pairs = [(c, base[c["seed"]]) for c in group if c["seed"] in base]
            gain = t_interval([c["final_acc"] - b["final_acc"] for c, b in pairs], confidence)
            row.update({"gain_mean": gain["mean"], "gain_std": gain["std"],
                        "gain_low": gain["low"], "gain_high": gain["high"],
                        "gain_pairs": gain["n"], "verdict": verdict(gain)})
            auc = t_interval([c["auc"] - b["auc"] for c, b in pairs], confidence)
            row.update({"auc_gain_mean": auc["mean"], "auc_gain_low": auc["low"],
                        "auc_gain_high": auc["high"], "auc_verdict": verdict(auc)})
            saved = t_interval([censored_epochs(b) - censored_epochs(c) for c, b in pairs],
                               confidence)
            row.update({"epochs_saved_mean": saved["mean"], "epochs_saved_low": saved["low"],
                        "epochs_saved_high": saved["high"], "speed_verdict": verdict(saved),
                        "censored": sum(x["epochs_to_target"] is None
                                        for pair in pairs for x in pair)})
        rows.append(row)
    scratch = {r["student"]: r for r in rows if r["technique"] == "none"}
    for row in rows:
        ref = scratch.get(row["student"], {}) if row["technique"] != "none" else {}
        row["speedup_epochs"] = _ratio(ref.get("epochs_to_target_mean"),
                                       row["epochs_to_target_mean"])
        row["speedup_wall"] = _ratio(ref.get("wall_to_target_mean"), row["wall_to_target_mean"])
    return rows


def student_targets(scratch_finals: dict[str, list[float]], students: list[str],
                    target) -> dict[str, float | None]:
    """The target accuracy of each student under the study's ``TargetConfig``: absolute,
    or a fraction of the mean final accuracy of its ``none`` cells (None until one ends)."""
    if target.kind == "accuracy":
        return {s: target.accuracy for s in students}
    return {s: target.fraction * mean(scratch_finals[s]) if scratch_finals.get(s) else None
            for s in students}

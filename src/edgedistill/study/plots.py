"""The study's three figures: accuracy curves per student shape, a heat map of the gain
over scratch, and the speed-up to the target accuracy. PNG via matplotlib's Agg."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from edgedistill.study.metrics import GAIN, NEGATIVE  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def accuracy_curves(cells: list[dict], students: list[str], techniques: list[str],
                    targets: dict[str, float | None], path: Path) -> Path:
    """One panel per student, one line per technique: mean test accuracy per epoch over
    the seeds, shaded +-1 std; the dashed line is the student's target."""
    cols = min(3, len(students))
    rows = math.ceil(len(students) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax, student in zip(axes.flat, students, strict=False):
        for technique in techniques:
            curves = [c["curve"] for c in cells
                      if c["student"] == student and c["technique"] == technique]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            acc = np.array([c[:length] for c in curves]) * 100
            epochs = np.arange(1, length + 1)
            mean = acc.mean(axis=0)
            line, = ax.plot(epochs, mean, marker="o", ms=3, label=technique)
            if len(curves) > 1:
                std = acc.std(axis=0, ddof=1)
                ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        if targets.get(student):
            ax.axhline(targets[student] * 100, color="grey", ls="--", lw=1, label="target")
        ax.set_title(student, fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(students):]:
        ax.axis("off")
    return _save(fig, path)


def gain_heatmap(groups: list[dict], students: list[str], techniques: list[str],
                 path: Path) -> Path:
    """Mean gain over scratch in points; '*' marks an interval above zero, '!' one below."""
    others = [t for t in techniques if t != "none"]
    grid = np.full((len(students), len(others)), np.nan)
    marks = {}
    for g in groups:
        if g["technique"] in others and g.get("gain_mean") is not None:
            i, j = students.index(g["student"]), others.index(g["technique"])
            grid[i, j] = g["gain_mean"] * 100
            marks[(i, j)] = {GAIN: "*", NEGATIVE: "!"}.get(g.get("verdict"), "")
    fig, ax = plt.subplots(figsize=(1.4 * len(others) + 3, 0.6 * len(students) + 1.8))
    finite = grid[np.isfinite(grid)]
    span = max(float(np.abs(finite).max()) if finite.size else 1.0, 0.1)
    image = ax.imshow(grid, cmap="RdBu", vmin=-span, vmax=span, aspect="auto")
    for (i, j), mark in marks.items():
        colour = "white" if abs(grid[i, j]) > 0.6 * span else "black"
        ax.text(j, i, f"{grid[i, j]:+.2f}{mark}", ha="center", va="center", fontsize=9,
                color=colour)
    ax.set_xticks(range(len(others)), others)
    ax.set_yticks(range(len(students)), students)
    ax.set_title("final accuracy gain over scratch (points)\n* interval above 0, ! below 0",
                 fontsize=9)
    fig.colorbar(image, ax=ax, label="points")
    return _save(fig, path)


def speedup_bars(groups: list[dict], students: list[str], techniques: list[str],
                 path: Path) -> Path:
    """Scratch's epochs (left) and training seconds (right) to target divided by each
    technique's; above 1 is faster than scratch. 'n.r.': target not reached."""
    others = [t for t in techniques if t != "none"]
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 1.6 * len(students) * 2), 3.8))
    width = 0.8 / max(len(others), 1)
    by_key = {(g["student"], g["technique"]): g for g in groups}
    for ax, key, label in ((axes[0], "speedup_epochs", "epochs"),
                           (axes[1], "speedup_wall", "training seconds")):
        for j, technique in enumerate(others):
            xs = np.arange(len(students)) + (j - (len(others) - 1) / 2) * width
            values = [(by_key.get((s, technique)) or {}).get(key) for s in students]
            ax.bar(xs, [v or 0.0 for v in values], width, label=technique)
            for x, v in zip(xs, values, strict=True):
                if v is None:
                    ax.text(x, 0.02, "n.r.", ha="center", va="bottom", fontsize=6, rotation=90)
        ax.axhline(1.0, color="grey", ls="--", lw=1)
        ax.set_xticks(range(len(students)), students, fontsize=8, rotation=15)
        ax.set_ylabel(f"speed-up to target ({label})")
        ax.legend(fontsize=7)
    return _save(fig, path)

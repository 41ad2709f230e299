"""The words of a study report: findings drawn from the statistics (best technique per
shape, every pair that lost accuracy) and the markdown page around the table. Findings
are generated, never hand-written, so a rerun with more seeds updates them honestly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgedistill.config.study import StudyConfig, TechniqueConfig
from edgedistill.report.markdown import markdown_table
from edgedistill.study.metrics import GAIN, NEGATIVE


def _pct(x: float | None, std: float | None = None) -> str:
    if x is None:
        return "—"
    return f"{x * 100:.2f}" + (f" ± {std * 100:.2f}" if std is not None else "")


def _gain(g: dict, key: str = "gain", scale: float = 100, fmt: str = "+.2f") -> str:
    if g.get(f"{key}_mean") is None:
        return "—"
    m = format(g[f"{key}_mean"] * scale, fmt)
    if g[f"{key}_low"] is None:
        return f"{m} (1 seed)"
    return (f"{m} [{format(g[f'{key}_low'] * scale, fmt)}, "
            f"{format(g[f'{key}_high'] * scale, fmt)}]")


def _num(x: float | None, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def findings(groups: list[dict], students: list[str], techniques: list[str],
             confidence: float, info: dict[str, dict]) -> list[str]:
    level = f"{confidence:.0%}"
    notes = []
    for student in students:
        rows = [g for g in groups if g["student"] == student]
        scratch = next((g for g in rows if g["technique"] == "none"), None)
        ranked = sorted((g for g in rows if g.get("gain_mean") is not None),
                        key=lambda g: -g["gain_mean"])
        if scratch is None or not ranked:
            continue
        best = ranked[0]
        model = info.get(student, {}).get("model", student)
        text = (f"**{student}** ({model}): scratch {_pct(scratch['final_acc_mean'])}%; best "
                f"technique **{best['technique']}** at {_gain(best)} points ({best['verdict'] or 'one seed'})")
        if best.get("speedup_epochs"):
            text += (f", reaching the target in {best['epochs_to_target_mean']:.1f} epochs vs "
                     f"{scratch['epochs_to_target_mean']:.1f} from scratch "
                     f"({best['speedup_epochs']:.2f}x)")
        notes.append(text + ".")
    negative = [g for g in groups if g.get("verdict") == NEGATIVE]
    if negative:
        notes.append(f"**Negative transfer** (whole {level} interval below zero): " + "; ".join(
            f"{g['technique']} on {g['student']} ({_gain(g)} points)" for g in negative) + ".")
    else:
        notes.append(f"No technique/shape pair lost accuracy with its whole {level} interval "
                     "below zero.")
    dips = [g for g in groups if g.get("gain_mean") is not None and g["gain_mean"] < 0
            and g.get("verdict") != NEGATIVE]
    if dips:
        notes.append("Lower mean than scratch, but the interval includes zero: " + "; ".join(
            f"{g['technique']} on {g['student']} ({_gain(g)})" for g in dips) + ".")
    gains = [g for g in groups if g.get("verdict") == GAIN]
    notes.append(f"Pairs with the whole {level} interval above zero: "
                 + ("; ".join(f"{g['technique']} on {g['student']}" for g in gains) or "none")
                 + f" (of {sum(g['technique'] != 'none' for g in groups)}).")
    paired = [g for g in groups if g["technique"] != "none" and g.get("gain_low") is not None]
    if paired:
        faster = [g for g in paired if g.get("speed_verdict") == GAIN]
        slower = [g for g in paired if g.get("speed_verdict") == NEGATIVE]
        early = [g for g in paired if g.get("auc_verdict") == GAIN]
        named = ", ".join(f"{g['technique']} on {g['student']}" for g in faster) or "none"
        notes.append(
            f"Claim 1, higher final accuracy: {len(gains)} of {len(paired)} pairs gain with the "
            f"whole {level} interval above zero, {len(negative)} lose with it below zero.")
        notes.append(
            f"Claim 2, faster convergence: {len(faster)} of {len(paired)} pairs reach the "
            f"scratch target in fewer epochs with the whole {level} interval of epochs saved "
            f"above zero ({named}), "
            f"{len(slower)} need more; {len(early)} have a higher mean accuracy over training "
            "(AUC) with the whole interval above zero.")
    for technique in techniques:
        values = [g["gain_mean"] for g in groups
                  if g["technique"] == technique and g.get("gain_mean") is not None]
        if technique != "none" and values:
            notes.append(f"{technique}: mean gain over the {len(values)} shapes "
                         f"{sum(values) / len(values) * 100:+.2f} points.")
    return notes


def _terms(technique: TechniqueConfig) -> str:
    parts = []
    for t in technique.losses:
        weight = "default" if t.weight is None else f"{t.weight:g}"
        layers = f" @{','.join(t.student_layers)}" if t.student_layers else ""
        params = "".join(f" {k}={v}" for k, v in t.params.items())
        parts.append(f"{t.name} x{weight}{layers}{params}")
    return " + ".join(parts)


def _results(groups: list[dict], seeds: int) -> str:
    rows = [{
        "student": g["student"], "technique": g["technique"], "seeds": g["seeds"],
        "final acc %": _pct(g["final_acc_mean"], g["final_acc_std"]),
        "best acc %": _pct(g["best_acc_mean"], g["best_acc_std"]),
        "AUC %": _pct(g["auc_mean"], g["auc_std"]),
        "epochs to target": f"{_num(g['epochs_to_target_mean'], '.1f')} ({g['reached']}/{g['seeds']})",
        "train s to target": _num(g["wall_to_target_mean"], ".0f"),
        "images to target": _num(g["images_to_target_mean"], ",.0f"),
        "gain vs none (points) [CI]": _gain(g), "verdict": g.get("verdict") or "—",
        "AUC gain (points) [CI]": _gain(g, "auc_gain"),
        "epochs saved [CI]": _gain(g, "epochs_saved", 1, "+.1f")
        + (f" ({g['censored']} censored)" if g.get("censored") else ""),
        "speed-up (epochs)": _num(g["speedup_epochs"], ".2f"),
        "speed-up (train s)": _num(g["speedup_wall"], ".2f"),
    } for g in groups]
    return markdown_table(rows)


def header_lines(cfg: StudyConfig, rec: dict[str, Any], teacher_acc: float | None,
                 n_test: int | None, command: str | None) -> list[str]:
    """The first lines of a report: what a reader must know before trusting any number."""
    from edgedistill.distill.provenance import describe

    d = cfg.data
    lines = []
    if rec.get("finished") is False:
        lines += [f"**Warning: unfinished teacher.** {describe(rec)}; this study ran with "
                  "`teacher.allow_unfinished: true`, so its gains do not measure what a "
                  "finished teacher transfers.", ""]
    train = f"{d.limit_train:,} training images" if d.limit_train else "all training images"
    test = f"{n_test:,} test images" if n_test else "all test images"
    lines += [f"**Teacher**: {describe(rec)}; {_pct(teacher_acc)}% on this study's test images.",
              f"**Data**: {d.dataset}, {train}, {test}; {cfg.train.epochs} epochs; "
              f"seeds {cfg.seeds}."]
    if n_test and n_test < 5000:
        se = 100 * (0.25 / n_test) ** 0.5
        lines.append(f"**Note**: {n_test:,} test images give a standard error of up to "
                     f"{se:.1f} points per accuracy; studies default to at least 5,000.")
    if command:
        lines.append(f"**Reproduce**: `{command}`")
    return [line + "  " for line in lines[:-1]] + lines[-1:]


def markdown_report(cfg: StudyConfig, techniques: list[TechniqueConfig], meta: dict[str, Any],
                    groups: list[dict], notes: list[str], missing: list[str],
                    targets: dict[str, float | None], figures: dict[str, Path],
                    teacher_acc: float | None) -> str:
    teacher, d, t = meta["teacher"], cfg.data, cfg.train
    rec = {**(teacher.get("recorded") or {}), "source": teacher["source"]}
    n_test = d.limit_test or meta.get("test_images")
    target = (f"{cfg.target.fraction:g} x the mean final accuracy of the student trained "
              "without a teacher (technique none)" if cfg.target.kind == "scratch_fraction"
              else f"test accuracy {cfg.target.accuracy:g} for every student")
    lines = [f"# Knowledge-transfer study: {cfg.name}", "", *header_lines(
        cfg, rec, teacher_acc, n_test, meta.get("command")), "",
        "Every cell trains one student shape with one transfer technique and one seed; all "
        "cells share the data, the schedule and the teacher, so differences come from the "
        "technique. Gains are paired by seed (same training subset, augmentation and "
        f"initial weights) with a {cfg.confidence:.0%} Student-t interval over the seeds.", "",
        "## Setup", "",
        f"* Teacher: `{teacher['source']}` ({teacher['model']}), frozen as the study's "
        f"snapshot; accuracy on the study's test images: {_pct(teacher_acc)}%.",
        f"* Data: {d.dataset}, " + (f"{d.limit_train} training images (a stratified subset "
                                    "drawn per seed)" if d.limit_train else "all training images")
        + f", {d.limit_test or 'all'} test images (the same for every cell), "
        f"augmentation {'on' if d.augment.enabled else 'off'}; teacher mode {cfg.teacher.mode}.",
        f"* Schedule: {t.epochs} epochs, batch {d.batch_size}, {t.optimizer.name} lr "
        f"{t.optimizer.lr:g}, {t.schedule.name} schedule, seeds {cfg.seeds}.",
        f"* Target: {target}. " + ", ".join(
            f"{s}: {_pct(v)}%" if v else f"{s}: not yet known" for s, v in targets.items()) + ".",
        "", markdown_table([{"student": s, "model": v["model"], "params": f"{v['params']:,}",
                             "MFLOPs": f"{v['flops'] / 1e6:.1f}"}
                            for s, v in meta["students"].items()]),
        markdown_table([{"technique": x.label, "loss terms": _terms(x)} for x in techniques]),
        "## Results (mean ± std over seeds)", "", _results(groups, len(cfg.seeds)),
        "AUC: mean test accuracy over the epochs (area under the accuracy curve / epochs). "
        "To target: mean over the seeds that reached it (reached/seeds). Train s: training "
        "time without evaluation, which varies with other load on a shared machine. Speed-up: "
        "scratch's mean epochs (or training seconds) to target divided by the technique's. "
        "AUC gain and epochs saved are paired by seed like the final-accuracy gain; a cell "
        "that never reached the target counts as one epoch past the end (censored).", "",
        "## Findings", "", *[f"* {n}" for n in notes], ""]
    titles = {"accuracy": "Test accuracy per epoch, one panel per student shape",
              "gain": "Gain over scratch", "speedup": "Speed-up to target"}
    for key, rel in figures.items():
        lines += [f"### {titles[key]}", "", f"![{titles[key]}]({rel.as_posix()})", ""]
    if missing:
        lines += ["## Unfinished cells", "", "Not in the statistics above; "
                  "`--resume` runs them: " + ", ".join(missing) + ".", ""]
    return "\n".join(lines)

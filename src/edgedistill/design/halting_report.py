"""``--halting-report``: the same run to the full schedule and with early halting, compared.

Both runs share config and seed, so they are identical up to the epoch where a halting
rule fires. The halted run goes first and saves its state at that epoch
(``checkpoints/halt.pt``); the full run continues from there instead of training those
epochs again (``share_prefix``; resuming is bit-exact, tested), and so can runs that try
other anneal lengths after the same halt. ``replay_halting`` tries another rule set on a
full run kept with ``train.keep_epoch_checkpoints``, training only its anneal. The
halting logic itself (rules, state machine, branching, replay) lives in
``train/halting/``; this module runs the runs and writes the report. Compute is the
usual training estimate: 3 x the student's forward FLOPs per image seen (forward +
backward), plus the teacher's forward FLOPs for every teacher output used (one per image
seen; for a source that precomputes its outputs per sample and draw, such as the cache,
one per sample and draw). Evaluation passes are not counted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgedistill.config import DistillExperiment, HaltingRule, RunBase
from edgedistill.report.markdown import markdown_table
from edgedistill.train.halting import parse_rules
from edgedistill.train.halting.replay import branch, prepare_replay
from edgedistill.train.halting.rules import Plateau, TeacherGap, describe

DEFAULT_RULES = {
    "distill": [Plateau(patience=3, min_delta=0.002), TeacherGap(epsilon=0.005)],
    "train": [Plateau(patience=3, min_delta=0.002)],
}


def default_rules(cfg: RunBase) -> list[HaltingRule]:
    """The config's own rules, else plateau (and, with a teacher, teacher_gap)."""
    if cfg.halting:
        return list(cfg.halting)
    return list(DEFAULT_RULES["distill" if isinstance(cfg, DistillExperiment) else "train"])


BOOKKEEPING = {"progress", "keep_epoch_checkpoints"}  # train keys that change no result


def finished(cfg: RunBase, out: Path) -> dict[str, Any] | None:
    """The summary of a run of ``cfg`` that already ended in ``out``, else None."""
    from edgedistill import api

    if not (out / "summary.json").exists() or not (out / "config.yaml").exists():
        return None
    done = api.run_config(out, type(cfg))
    same = [c.model_dump(exclude={"train": BOOKKEEPING}) for c in (cfg, done)]
    return json.loads((out / "summary.json").read_text()) if same[0] == same[1] else None


def _run(cfg: RunBase, out: Path, resume: bool, progress: bool) -> dict[str, Any]:
    from edgedistill import api
    from edgedistill.distill.run import run_distill

    if resume and (summary := finished(cfg, out)) is not None:
        return summary
    if isinstance(cfg, DistillExperiment):
        return run_distill(cfg, out, resume=resume, progress=progress)
    return api.train(cfg, out, resume=resume, progress=progress)


def forward_flops(cfg: RunBase, summary: dict) -> tuple[int, int, int]:
    """(student FLOPs, teacher FLOPs, teacher outputs used per cache fill) per image."""
    from edgedistill import api
    from edgedistill.models import count_flops, create_model

    train, _ = api.build_data(cfg.data, cfg.seed)
    shape = tuple(train.image_shape)
    student = create_model(**summary["spec"])
    teacher_flops, cached = 0, 0
    if isinstance(cfg, DistillExperiment):
        from edgedistill.distill.sources import SOURCES

        teacher_flops = count_flops(api.load_model(cfg.teacher.source), shape)
        cached = len(train) * (SOURCES.get(cfg.teacher.mode).pipeline_draws(cfg) or 0)
    return count_flops(student, shape), teacher_flops, cached


def run_row(label: str, summary: dict, flops: tuple[int, int, int], cfg: RunBase) -> dict:
    student, teacher, cached = flops
    seen = summary["images_seen"]
    teacher_images = cached if cached else (seen if isinstance(cfg, DistillExperiment) else 0)
    halted = summary.get("halted") or {}
    val = {"final_val_acc": summary["final_val_acc"]} if "final_val_acc" in summary else {}
    return {"run": label, "epochs": f"{summary['epochs_run']}/{summary['epochs_planned']}",
            "wall_s": summary["wall_seconds"], "images_seen": seen,
            "train_TFLOPs": (3 * student * seen + teacher * teacher_images) / 1e12, **val,
            "final_test_acc": summary["final_test_acc"], "best_test_acc": summary["best_test_acc"],
            "halted": halted.get("reason", "-")}


def replay_halting(full_dir: str | Path, cfg: RunBase, rules: list[HaltingRule], anneal: int,
                   out: str | Path, progress: bool = False) -> dict[str, Any] | None:
    """The run that ``rules`` with ``anneal`` would have given, from the finished full run of
    ``cfg`` in ``full_dir`` (kept with ``train.keep_epoch_checkpoints``), written to ``out``;
    None when no rule fires within the full run (``train/halting/replay.py``)."""
    if not prepare_replay(full_dir, rules, cfg.halting_mode, out):
        return None
    return _run(cfg.model_copy(update={"halting": rules, "halting_anneal_epochs": anneal}),
                Path(out), True, progress)


def run_halting_report(cfg: RunBase, out: str | Path, resume: bool = False,
                       progress: bool = True, anneals: list[int] | None = None,
                       share_prefix: bool = True) -> dict[str, Any]:
    """Run ``cfg`` with halting under ``out/halted`` and to the full schedule under
    ``out/full``; write ``out/HALTING.md`` and ``out/halting.json``; return the comparison.

    ``anneals`` (default: the config's ``halting_anneal_epochs``) are anneal lengths to
    compare after the same halt: the first is ``out/halted``, each other one
    ``out/halted-anneal{K}``, branched from the halt. ``share_prefix=False`` trains the
    full run from scratch instead. ``resume`` continues runs an interruption left
    unfinished."""
    out = Path(out)
    anneals = list(anneals) if anneals else [cfg.halting_anneal_epochs]
    rules = default_rules(cfg)
    if not isinstance(cfg, DistillExperiment):
        rules = [r for r in rules if not r.needs_teacher]

    def halted_cfg(k: int) -> RunBase:
        return cfg.model_copy(update={"halting": rules, "halting_anneal_epochs": k})

    halted_dir = out / "halted"
    summaries = {"halted": _run(halted_cfg(anneals[0]), halted_dir, resume, progress)}
    fired = (halted_dir / "checkpoints" / "halt.pt").exists()
    if share_prefix:
        halt_epoch = (summaries["halted"].get("halted") or {}).get("epoch")
        branch(halted_dir, out / "full", "halt.pt" if fired else "last.pt", halt_epoch)
    summaries["full"] = _run(cfg.model_copy(update={"halting": []}), out / "full",
                             resume or share_prefix, progress)
    for k in anneals[1:] if fired else []:
        branch(halted_dir, out / f"halted-anneal{k}", "halt.pt")
        summaries[f"halted-anneal{k}"] = _run(halted_cfg(k), out / f"halted-anneal{k}", True,
                                              progress)
    flops = forward_flops(cfg, summaries["full"])
    variant_keys = [(anneals[0], "halted"), *[(k, f"halted-anneal{k}") for k in anneals[1:]]]
    labels = {"full": "full", **{key: variant_label("halted", k) for k, key in variant_keys}}
    rows = {key: run_row(labels[key], s, flops, cfg) for key, s in summaries.items()}
    full = rows["full"]
    halt = summaries["halted"].get("halted") or {}
    epoch = summaries["halted"]["epochs_run"] - 1
    records = [json.loads(x) for x in (out / "full" / "metrics.jsonl").read_text().splitlines()]

    def saving(key: str) -> dict[str, Any]:
        row, summary = rows[key], summaries[key]
        return {
            "saved_epochs": 1 - summary["epochs_run"] / summaries["full"]["epochs_run"],
            "saved_wall": 1 - row["wall_s"] / full["wall_s"],
            "saved_flops": 1 - row["train_TFLOPs"] / full["train_TFLOPs"],
            "accuracy_delta_points": 100 * (row["final_test_acc"] - full["final_test_acc"]),
            "annealed_epochs": (summary.get("halted") or {}).get("annealed_epochs", 0)}

    result = {
        "rules": [r.model_dump() for r in rules], "halting_mode": cfg.halting_mode,
        "runs": [full] + [rows[k] for k in rows if k != "full"],
        **saving("halted"),
        "full_run_acc_at_halt_epoch": records[epoch]["test_acc"],
        "halt_epoch": halt.get("epoch"),
        "shared_prefix": share_prefix and fired,
        "full_run": ("branched at the halt" if share_prefix and fired else
                     "copied: no rule fired" if share_prefix else "trained from scratch"),
        "variants": [{"anneal": k, **saving(key)} for k, key in variant_keys if key in rows],
    }
    (out / "halting.json").write_text(json.dumps(result, indent=2))
    (out / "HALTING.md").write_text(halting_markdown(cfg, result))
    return result


def variant_label(name: str, anneal: int) -> str:
    return f"{name}, anneal {anneal}" if anneal else name


def halting_markdown(cfg: RunBase, result: dict) -> str:
    rules = ", ".join(describe(r) for r in parse_rules(result["rules"]))
    annealed = result.get("annealed_epochs") or 0
    at_halt = result["full_run_acc_at_halt_epoch"]
    if annealed:
        comparison = (
            f"The rule fired after epoch {result['halt_epoch'] + 1}; the learning rate was then "
            f"annealed to the schedule's floor over {annealed} more epoch(s) "
            f"(`halting_anneal_epochs`), and training stopped. The full run's test accuracy "
            f"at that last epoch was {at_halt:.4f}, with its learning rate still mid-schedule.")
    elif result["shared_prefix"]:
        comparison = f"The full run's test accuracy at the halting epoch was {at_halt:.4f}."
    else:
        same = result["runs"][1]["final_test_acc"] == at_halt
        comparison = (
            f"The full run's test accuracy at the halting epoch was {at_halt:.4f} "
            f"({'identical to' if same else 'differs from'} the halted run's final accuracy"
            f"{'' if same else ': training is not bit-reproducible on this device'}).")
    shared = {
        "branched at the halt": "The full run continued from the halted run's state at the end "
        "of the epoch where the rule fired (`halted/checkpoints/halt.pt`): same config and "
        "seed, so one trajectory up to there, not trained twice.",
        "copied: no rule fired": "No rule fired, so the full run is the halted run's own "
        "(copied from its last checkpoint).",
        "trained from scratch": "The full run was trained from scratch."}[result["full_run"]]
    split = "validation" if "final_val_acc" in result["runs"][0] else "test"
    variants = [f"- anneal {v['anneal']}: saved {100 * v['saved_flops']:.1f}% of training "
                f"FLOPs for {v['accuracy_delta_points']:+.2f} points"
                for v in result["variants"][1:]]
    return "\n".join([
        f"# Halting report: {cfg.name}", "",
        f"Same config and seed {cfg.seed}, {cfg.train.epochs}-epoch schedule; halting rules "
        f"({result['halting_mode']}, read on the {split} set): {rules}.", "",
        markdown_table(result["runs"]),
        f"Halting saved **{100 * result['saved_flops']:.1f}%** of training FLOPs, "
        f"{100 * result['saved_epochs']:.1f}% of epochs and {100 * result['saved_wall']:.1f}% "
        f"of wall time, for **{result['accuracy_delta_points']:+.2f} points** of final test "
        "accuracy.", "",
        *(["Other anneal lengths after the same halt (final test accuracy vs the full run):",
           *variants, ""] if variants else []),
        comparison, shared, "",
        "FLOPs: 3 x student forward FLOPs x images seen, plus teacher forward FLOPs per "
        "teacher output used; evaluation passes not counted. Wall time of a branched run "
        "includes the shared epochs.", ""])

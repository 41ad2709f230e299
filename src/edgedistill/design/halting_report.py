"""``--halting-report``: the same run to the full schedule and with early halting, compared.

Both runs share config and seed, so they are identical up to the epoch where halting
stops (checked below against the full run's record of that epoch). Compute is the usual
training estimate: 3 x the student's forward FLOPs per image seen (forward + backward),
plus the teacher's forward FLOPs for every teacher output used (online and pool: one
per image seen; cache: one per cached image and draw). Evaluation passes are not counted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgedistill.config import DistillExperiment, HaltingRule, RunBase
from edgedistill.report.markdown import markdown_table
from edgedistill.train.halting import TEACHER_RULES

DEFAULT_RULES = {
    "distill": [HaltingRule(kind="plateau", patience=3, min_delta=0.002),
                HaltingRule(kind="teacher_gap", epsilon=0.005)],
    "train": [HaltingRule(kind="plateau", patience=3, min_delta=0.002)],
}


def default_rules(cfg: RunBase) -> list[HaltingRule]:
    """The config's own rules, else plateau (and, with a teacher, teacher_gap)."""
    if cfg.halting:
        return list(cfg.halting)
    return list(DEFAULT_RULES["distill" if isinstance(cfg, DistillExperiment) else "train"])


def _run(cfg: RunBase, out: Path, resume: bool, progress: bool) -> dict[str, Any]:
    from edgedistill import api
    from edgedistill.distill.run import run_distill

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
        teacher_flops = count_flops(api.load_model(cfg.teacher.source), shape)
        if cfg.teacher.mode == "cache":
            cached = len(train) * cfg.teacher.cache.num_draws
    return count_flops(student, shape), teacher_flops, cached


def run_row(label: str, summary: dict, flops: tuple[int, int, int], cfg: RunBase) -> dict:
    student, teacher, cached = flops
    seen = summary["images_seen"]
    teacher_images = cached if cached else (seen if isinstance(cfg, DistillExperiment) else 0)
    halted = summary.get("halted") or {}
    return {"run": label, "epochs": f"{summary['epochs_run']}/{summary['epochs_planned']}",
            "wall_s": summary["wall_seconds"], "images_seen": seen,
            "train_TFLOPs": (3 * student * seen + teacher * teacher_images) / 1e12,
            "final_test_acc": summary["final_test_acc"], "best_test_acc": summary["best_test_acc"],
            "halted": halted.get("reason", "-")}


def run_halting_report(cfg: RunBase, out: str | Path, resume: bool = False,
                       progress: bool = True) -> dict[str, Any]:
    """Run ``cfg`` without and with halting under ``out/full`` and ``out/halted``; write
    ``out/HALTING.md`` and ``out/halting.json``; return the comparison. ``resume``
    continues runs an interruption left unfinished."""
    out = Path(out)
    rules = default_rules(cfg)
    if not isinstance(cfg, DistillExperiment):
        rules = [r for r in rules if r.kind not in TEACHER_RULES]
    summaries = {"full": _run(cfg.model_copy(update={"halting": []}), out / "full", resume,
                              progress),
                 "halted": _run(cfg.model_copy(update={"halting": rules}), out / "halted",
                                resume, progress)}
    flops = forward_flops(cfg, summaries["full"])
    rows = [run_row(k, s, flops, cfg) for k, s in summaries.items()]
    full, halted = rows
    halt = summaries["halted"].get("halted") or {}
    epoch = summaries["halted"]["epochs_run"] - 1
    records = [json.loads(x) for x in (out / "full" / "metrics.jsonl").read_text().splitlines()]
    result = {
        "rules": [r.model_dump() for r in rules], "halting_mode": cfg.halting_mode,
        "runs": rows,
        "saved_epochs": 1 - summaries["halted"]["epochs_run"] / summaries["full"]["epochs_run"],
        "saved_wall": 1 - halted["wall_s"] / full["wall_s"],
        "saved_flops": 1 - halted["train_TFLOPs"] / full["train_TFLOPs"],
        "accuracy_delta_points": 100 * (halted["final_test_acc"] - full["final_test_acc"]),
        "full_run_acc_at_halt_epoch": records[epoch]["test_acc"],
        "halt_epoch": halt.get("epoch"),
        "annealed_epochs": halt.get("annealed_epochs", 0),
    }
    (out / "halting.json").write_text(json.dumps(result, indent=2))
    (out / "HALTING.md").write_text(halting_markdown(cfg, result))
    return result


RULE_PARAMS = {"plateau": ("patience", "min_delta"), "agreement": ("threshold",),
               "teacher_gap": ("epsilon",), "loss_improvement": ("window", "delta")}


def halting_markdown(cfg: RunBase, result: dict) -> str:
    rules = ", ".join(f"{r['kind']}({', '.join(f'{p}={r[p]}' for p in RULE_PARAMS[r['kind']])})"
                      for r in result["rules"])
    same = result["runs"][1]["final_test_acc"] == result["full_run_acc_at_halt_epoch"]
    annealed = result.get("annealed_epochs") or 0
    if annealed:
        comparison = (
            f"The rule fired after epoch {result['halt_epoch'] + 1}; the learning rate was then "
            f"annealed to the schedule's floor over {annealed} more epoch(s) "
            f"(`halting_anneal_epochs`), and training stopped. The full run's test accuracy "
            f"at that last epoch was {result['full_run_acc_at_halt_epoch']:.4f}, with its "
            "learning rate still mid-schedule.")
    else:
        comparison = (
            f"The full run's test accuracy at the halting epoch was "
            f"{result['full_run_acc_at_halt_epoch']:.4f} "
            f"({'identical to' if same else 'differs from'} the halted run's final accuracy"
            f"{'' if same else ': training is not bit-reproducible on this device'}).")
    return "\n".join([
        f"# Halting report: {cfg.name}", "",
        f"Same config and seed {cfg.seed}, {cfg.train.epochs}-epoch schedule; halting rules "
        f"({result['halting_mode']}): {rules}.", "",
        markdown_table(result["runs"]),
        f"Halting saved **{100 * result['saved_flops']:.1f}%** of training FLOPs, "
        f"{100 * result['saved_epochs']:.1f}% of epochs and {100 * result['saved_wall']:.1f}% "
        f"of wall time, for **{result['accuracy_delta_points']:+.2f} points** of final test "
        "accuracy.", "",
        comparison, "",
        "FLOPs: 3 x student forward FLOPs x images seen, plus teacher forward FLOPs per "
        "teacher output used; evaluation passes not counted.", ""])

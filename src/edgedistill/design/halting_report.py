"""``--halting-report``: the same run to the full schedule and with early halting, compared.

Both runs share config and seed, so they are identical up to the epoch where a halting
rule fires. The halted run goes first and saves its state at that epoch
(``checkpoints/halt.pt``); the full run continues from there instead of training those
epochs again (``share_prefix``; resuming is bit-exact, tested), and so can runs that try
other anneal lengths after the same halt. ``replay_halting`` goes further: the rules
are pure functions of the metric history, so on a full run kept with
``train.keep_epoch_checkpoints`` any other rule set is tried by reading its halting epoch
off the full run's records and training only its anneal. Compute is the usual
training estimate: 3 x the student's forward FLOPs per image seen (forward + backward),
plus the teacher's forward FLOPs for every teacher output used (online and pool: one
per image seen; cache: one per cached image and draw). Evaluation passes are not counted.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from edgedistill.config import DistillExperiment, HaltingRule, RunBase
from edgedistill.errors import UsageError
from edgedistill.report.markdown import markdown_table
from edgedistill.train.checkpoint import load_checkpoint, save_checkpoint
from edgedistill.train.halting import TEACHER_RULES, should_halt
from edgedistill.train.trainer import epoch_checkpoint

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
        teacher_flops = count_flops(api.load_model(cfg.teacher.source), shape)
        if cfg.teacher.mode == "cache":
            cached = len(train) * cfg.teacher.cache.num_draws
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


def branch(src: Path, dst: Path, checkpoint: str, upto: int | None = None) -> None:
    """Start run ``dst`` from ``src``'s ``checkpoint``, the state after epoch index ``upto``
    (None: don't keep epoch checkpoints), with ``src``'s epoch records (the Trainer keeps
    those before the checkpoint's epoch) and the epoch checkpoints ``src`` kept before it.
    A no-op once ``dst`` has begun."""
    if (dst / "checkpoints" / "last.pt").exists():
        return
    (dst / "checkpoints").mkdir(parents=True, exist_ok=True)
    start = src / "checkpoints" / checkpoint
    if upto is not None:
        for epoch in range(upto):
            kept = epoch_checkpoint(src, epoch)
            if kept.exists():
                shutil.copyfile(kept, epoch_checkpoint(dst, epoch))
        if epoch_checkpoint(src, upto).exists():  # src's own is past the halt: annealing
            shutil.copyfile(start, epoch_checkpoint(dst, upto))
    shutil.copyfile(start, dst / "checkpoints" / "last.pt")
    shutil.copyfile(src / "metrics.jsonl", dst / "metrics.jsonl")


def replay_halting(full_dir: str | Path, cfg: RunBase, rules: list[HaltingRule], anneal: int,
                   out: str | Path, progress: bool = False) -> dict[str, Any] | None:
    """The run that ``rules`` with ``anneal`` would have given, from the finished full run of
    ``cfg`` in ``full_dir`` (kept with ``train.keep_epoch_checkpoints``), written to ``out``;
    None when no rule fires within the full run.

    The epoch where the rules fire is read off the full run's records (a rule sees the
    same history there as in a live run); training restarts from that epoch's checkpoint
    with the halt pending, so only the anneal is trained. Bit-identical to a live run of
    the same config (tested)."""
    full_dir, out = Path(full_dir), Path(out)
    lines = (full_dir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines if x.strip()]
    for epoch in range(len(records)):
        reason = should_halt(rules, records[:epoch + 1], cfg.halting_mode)
        if reason:
            break
    else:
        return None
    if not (out / "checkpoints" / "last.pt").exists():
        kept = epoch_checkpoint(full_dir, epoch)
        if not kept.exists():
            raise UsageError(f"{kept} is missing: the rules fire after epoch {epoch + 1}, and "
                             "replaying needs the full run's checkpoint of that epoch; train "
                             "it with train.keep_epoch_checkpoints: true")
        state = load_checkpoint(kept)
        state["pending_halt"] = json.dumps({"reasons": [reason], "record": records[epoch]})
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        save_checkpoint(out / "checkpoints" / "last.pt", state)
        shutil.copyfile(full_dir / "metrics.jsonl", out / "metrics.jsonl")
    return _run(cfg.model_copy(update={"halting": rules, "halting_anneal_epochs": anneal}),
                out, True, progress)


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
        rules = [r for r in rules if r.kind not in TEACHER_RULES]

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


RULE_PARAMS = {"plateau": ("patience", "min_delta"), "agreement": ("threshold",),
               "teacher_gap": ("epsilon",), "loss_improvement": ("window", "delta")}


def halting_markdown(cfg: RunBase, result: dict) -> str:
    rules = ", ".join(f"{r['kind']}({', '.join(f'{p}={r[p]}' for p in RULE_PARAMS[r['kind']])})"
                      for r in result["rules"])
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

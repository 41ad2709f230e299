"""Where a teacher came from: its recorded accuracy and how much of its planned schedule
it trained.

A result is only as good as its teacher. A snapshot taken early in the teacher's schedule
makes distillation look useless (the first knowledge-transfer study of this project lost
to scratch on every seed for that reason), so every run records this, and an unfinished
teacher is refused unless the config says ``teacher.allow_unfinished: true``.

Sources: ``zoo:NAME`` (the shipped manifest), a run directory (its ``config.yaml``,
``metrics.jsonl`` and ``summary.json``), a weights or checkpoint file inside a run
directory (that run), or any other file (provenance unknown: accepted, and said so).
A model config or Python module (trained elsewhere) records its weights file and sha256.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgedistill.errors import UsageError


def _run_record(run_dir: Path) -> dict[str, Any]:
    from edgedistill import api

    lines = []
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        for line in metrics.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                break
    planned = (api.run_config(run_dir).get("train") or {}).get("epochs")
    summary = {}
    if (run_dir / "summary.json").exists():
        summary = json.loads((run_dir / "summary.json").read_text())
    acc = summary.get("final_test_acc", lines[-1].get("test_acc") if lines else None)
    return {"kind": "run", "run_dir": str(run_dir), "test_acc": acc,
            "epochs_trained": len(lines), "epochs_planned": planned,
            "finished": bool(summary) and (planned is None or len(lines) >= planned
                                           or summary.get("halted") is not None)}


def foreign_record(source: Any) -> dict[str, Any]:
    """A teacher trained outside edgedistill (a model config or a Python module): what it
    is and which weights it has (file and sha256). Nothing says whether its training was
    finished, so ``finished`` is None and the run is not refused for it."""
    from torch import nn

    from edgedistill import api

    info: dict[str, Any] = {"source": api.describe_source(source), "test_acc": None,
                            "epochs_trained": None, "epochs_planned": None, "finished": None,
                            "note": "trained outside edgedistill"}
    if isinstance(source, nn.Module):
        return {**info, "kind": "python", "weights_sha256": state_sha256(source)}
    info["kind"] = "foreign"
    if source.pretrained:
        info["weights"] = f"published weights of {source.name}"
    elif source.weights:
        from edgedistill.models.foreign import file_sha256

        info["weights"] = source.weights
        if Path(source.weights).is_file():
            info["weights_sha256"] = file_sha256(source.weights)
    else:
        info["note"] = "fresh weights (no weights file, not pretrained)"
    return info


def state_sha256(model) -> str:
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def teacher_provenance(source: Any) -> dict[str, Any]:
    """What is known of ``source``: kind, test accuracy, epochs trained and planned, and
    ``finished`` (True, False, or None when nothing is recorded)."""
    from edgedistill import api, pretrained

    if not isinstance(source, (str, Path)):
        return foreign_record(source)
    source = str(source)
    if source.startswith("zoo:"):
        entry = pretrained.manifest().get(source[4:], {})
        trained, planned = entry.get("epochs_trained"), entry.get("epochs_planned")
        info = {"kind": "zoo", "test_acc": entry.get("test_acc"), "epochs_trained": trained,
                "epochs_planned": planned, "date": entry.get("date"),
                "finished": None if trained is None or planned is None else trained >= planned}
        if entry.get("note"):
            info["note"] = entry["note"]
    else:
        run_dir = api.run_dir_of(source)
        if run_dir is not None and (run_dir / "metrics.jsonl").exists():
            info = _run_record(run_dir)
        else:
            info = {"kind": "file", "test_acc": None, "epochs_trained": None,
                    "epochs_planned": None, "finished": None}
    return {"source": source, **info}


def describe(info: dict[str, Any]) -> str:
    """One line for logs and reports."""
    acc = info.get("test_acc")
    acc_s = f"{acc:.2%} test accuracy" if isinstance(acc, (int, float)) else "accuracy unknown"
    trained, planned = info.get("epochs_trained"), info.get("epochs_planned")
    if trained is None:
        sched = "training record unknown"
    else:
        sched = f"{trained}/{planned if planned is not None else '?'} planned epochs"
    state = {True: "finished", False: "UNFINISHED", None: "provenance unknown"}[
        info.get("finished")]
    if info.get("kind") in ("foreign", "python"):
        state = f"weights {info.get('weights', 'of the given module')}"
        if info.get("weights_sha256"):
            state += f" (sha256 {info['weights_sha256'][:12]})"
    note = f"; {info['note']}" if info.get("note") else ""
    return f"teacher {info['source']}: {acc_s}, {sched}, {state}{note}"


def require_finished(info: dict[str, Any], allow_unfinished: bool) -> None:
    """Refuse a teacher whose own training stopped before its schedule ended."""
    if info.get("finished") is False and not allow_unfinished:
        raise UsageError(
            f"{describe(info)}: distilling from a teacher snapshot taken before the end of "
            "its schedule gives misleading results; finish its training (train --resume), "
            "or set teacher.allow_unfinished: true to use it anyway (reports then say so)")

"""The bottleneck table of a split run, and the files serving and planning read.

``table.md`` / ``table.json``: per bottleneck, accuracy (float and over the wire),
bytes per sample at the split against the input sent as PNG and JPEG 95/75, head
FLOPs/params and server FLOPs. ``split.json``: data statistics, shapes, the wire
settings, the trained bottlenecks and the chosen one: the fewest bytes whose
quantized accuracy is within ``tolerance`` of the teacher's (else the most accurate).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgedistill.report.markdown import markdown_table
from edgedistill.split.evaluate import accuracy_on, compute_costs, evaluate_split
from edgedistill.split.images import measure_encodings
from edgedistill.split.model import SplitModel


def bottleneck_row(model: SplitModel, name: str, channels: int, stage: str,
                   summary: dict[str, Any], test_pipe, wire, input_shape,
                   device: torch.device) -> dict[str, Any]:
    scores = evaluate_split(model, test_pipe, wire, device)
    costs = compute_costs(model, input_shape)
    return {"name": name, "channels": channels, "stage": stage,
            "codec": model.head.spec.get("kind", "8bit"), "beta": model.head.spec.get("beta"),
            "bottleneck_shape": list(model.head.bottleneck_shape), **scores, **costs,
            "epochs": summary.get("epochs_run"), "train_seconds": summary.get("wall_seconds")}


def input_rows(teacher: nn.Module, test_data, teacher_acc: float,
               device: torch.device) -> dict[str, dict[str, float]]:
    """Bytes per test image as raw pixels, PNG, JPEG 95 and 75, and the teacher's accuracy
    on each (PNG is lossless, so it keeps the teacher's accuracy exactly)."""
    images = test_data.images.numpy()
    rows = {"raw": {"bytes_mean": float(images[0].size), "acc": teacher_acc}}
    for fmt, stats in measure_encodings(images).items():
        decoded = stats["decoded"]
        acc = teacher_acc if decoded is None else accuracy_on(
            teacher, decoded, test_data.labels, test_data.mean, test_data.std, device)
        rows[fmt] = {"bytes_mean": stats["bytes_mean"], "acc": acc}
    return rows


def choose(rows: list[dict], teacher_acc: float, tolerance: float) -> str:
    """Fewest bytes within ``tolerance`` of the teacher, else the most accurate over the wire."""
    ok = [r for r in rows if r["acc_quantized"] >= teacher_acc - tolerance - 1e-12]
    if ok:
        return min(ok, key=lambda r: (r["bytes_per_sample"], -r["acc_quantized"]))["name"]
    return max(rows, key=lambda r: (r["acc_quantized"], -r["bytes_per_sample"]))["name"]


def table_markdown(meta: dict, rows: list[dict], inputs: dict, chosen: str) -> str:
    jpeg95 = inputs["jpeg95"]["bytes_mean"]
    teacher_acc = meta["teacher_acc"]
    head = [{
        "option": f"{r['name']}{' (chosen)' if r['name'] == chosen else ''}",
        "bottleneck": "x".join(map(str, r["bottleneck_shape"])),
        "codec": r["codec"] + (f" beta {r['beta']:g}" if r["beta"] is not None else ""),
        "acc float": f"{r['acc_float']:.4f}", "acc wire": f"{r['acc_quantized']:.4f}",
        "vs teacher (pt)": f"{100 * (r['acc_quantized'] - teacher_acc):+.2f}",
        "bytes/sample": f"{r['bytes_per_sample']:.1f}",
        "JPEG-95 / split": f"{jpeg95 / r['bytes_per_sample']:.1f}x",
        "head params": r["head_params"], "head MFLOPs": f"{r['head_flops'] / 1e6:.2f}",
        "server MFLOPs": f"{(r['decoder_flops'] + r['tail_flops']) / 1e6:.2f}",
        "teacher-head MFLOPs": f"{r['teacher_head_flops'] / 1e6:.2f}",
    } for r in rows]
    sent = [{"input sent as": fmt, "bytes/image": f"{v['bytes_mean']:.1f}",
             "teacher acc": f"{v['acc']:.4f}"} for fmt, v in inputs.items()]
    return (f"# split at `{meta['split_at']}` of {meta['teacher_spec']['name']} "
            f"({meta['dataset']}, {meta['test_images']} test images, input "
            f"{'x'.join(map(str, meta['input_shape']))})\n\n"
            f"Teacher accuracy {teacher_acc:.4f}. Wire (codec 8bit): 8-bit "
            f"{'per-channel' if meta['wire']['per_channel'] else 'per-tensor'}, "
            f"compression {meta['wire']['compression']}; codec entropy: CompressAI "
            "EntropyBottleneck bitstreams; bytes are whole messages (header included), one "
            "image per message.\n\n"
            + markdown_table(head) + "\n" + markdown_table(sent))


def write_report(run_dir: Path, meta: dict, rows: list[dict], inputs: dict,
                 tolerance: float) -> dict[str, Any]:
    chosen = choose(rows, meta["teacher_acc"], tolerance)
    keep = ("name", "channels", "stage", "codec", "beta", "bottleneck_shape", "acc_float",
            "acc_quantized", "bytes_per_sample", "head_flops", "decoder_flops", "tail_flops", "teacher_flops")
    split = {**meta, "chosen": chosen, "tolerance": tolerance, "inputs": inputs,
             "bottlenecks": [{k: r[k] for k in keep} for r in rows]}
    (run_dir / "split.json").write_text(json.dumps(split, indent=2))
    (run_dir / "table.json").write_text(json.dumps({"rows": rows, "inputs": inputs}, indent=2))
    (run_dir / "table.md").write_text(table_markdown(meta, rows, inputs, chosen))
    summary = {"teacher_acc": meta["teacher_acc"], "chosen": chosen, "rows": rows,
               "inputs": inputs, "table": str(run_dir / "table.md")}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary

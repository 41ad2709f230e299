"""Before the first cell: freeze the teacher, check every (student, technique) pair on one
batch, and build each teacher cache the pending cells need exactly once.

The teacher is copied into the study folder because a zoo entry or a run directory can
be retrained while a multi-day study runs; every cell reads the copy, so all cells
distil from the same weights. The dry run turns a layer or shape mistake into an error
in seconds instead of a failed cell hours into the grid. Building the caches here, one
at a time, also keeps parallel workers from racing to build the same one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch

from edgedistill.config.study import StudyConfig, TechniqueConfig
from edgedistill.errors import UsageError


def weights_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def snapshot_teacher(source: str, out: Path, allow_unfinished: bool = False,
                     log=print) -> dict[str, Any]:
    """Copy the teacher to ``out/teacher.safetensors`` once, with its provenance; later
    runs reuse the copy and say so when the source has changed since. A teacher whose own
    run stopped before its schedule ended is refused unless ``allow_unfinished``."""
    from edgedistill import api
    from edgedistill.distill.provenance import describe, require_finished, teacher_provenance
    from edgedistill.models import student_name
    from edgedistill.train.checkpoint import save_weights

    path, info_path = out / "teacher.safetensors", out / "teacher.json"
    if path.exists() and info_path.exists():
        info = json.loads(info_path.read_text())
        try:
            changed = weights_digest(api.load_model(source)) != info["sha256"]
        except UsageError:
            changed = True
        if changed:
            log(f"note: teacher {source} is gone or has changed since this study started; "
                f"the study keeps distilling from its snapshot {path}")
        return info
    provenance = teacher_provenance(source)
    require_finished(provenance, allow_unfinished)
    log(describe(provenance))
    model = api.load_model(source)
    digest = weights_digest(model)
    info = {"source": source, "snapshot": str(path), "sha256": digest,
            "model": student_name(model.spec), "recorded": provenance,
            "allow_unfinished": allow_unfinished,
            "date": time.strftime("%Y-%m-%d %H:%M", time.localtime())}
    save_weights(path, model.state_dict(), model.spec)
    info_path.write_text(json.dumps(info, indent=2))
    return info


def teacher_layers(teacher: torch.nn.Module, technique: TechniqueConfig) -> list[str]:
    """The teacher layers a technique's Distiller will hook, in the Distiller's order
    (the order is part of the cache key)."""
    from edgedistill.models import resolve_layer_aliases

    paths = [p for term in technique.losses
             for p in resolve_layer_aliases(teacher, term.teacher_layers)]
    return list(dict.fromkeys(paths))


def check_pairs(cfg: StudyConfig, techniques: list[TechniqueConfig], teacher_path: Path
                ) -> dict[str, dict[str, Any]]:
    """Build every (student, technique) Distiller on one small batch; return each
    student's model name, parameters and FLOPs."""
    from edgedistill import api
    from edgedistill.distill.distiller import Distiller
    from edgedistill.distill.run import build_student, check_teacher_fits
    from edgedistill.distill.sources import OnlineSource
    from edgedistill.models import student_name, summarize

    teacher = api.load_model(teacher_path)
    data_cfg = cfg.data.model_copy(update={"batch_size": 16})
    train_data, test_data = api.build_data(data_cfg, cfg.seeds[0])
    check_teacher_fits(teacher, train_data, cfg.teacher.source)
    pipe, _ = api.build_pipelines(data_cfg, train_data, test_data, cfg.seeds[0],
                                  torch.device("cpu"))
    batch = pipe.batch(0, 0)
    shape = (1, *train_data.images.shape[1:])
    students = {}
    for entry, label in zip(cfg.students, cfg.student_labels(), strict=True):
        try:
            model = build_student(entry.student_config(), teacher, train_data.num_classes,
                                  train_data.images.shape[1])
        except UsageError as err:
            raise UsageError(f"students: {label}: {err}") from None
        info = summarize(model, shape)
        students[label] = {"model": student_name(model.spec), "params": info["params"],
                           "flops": info["flops"]}
        for technique in techniques:
            frozen = copy.deepcopy(teacher)
            try:
                source = OnlineSource(frozen, torch.device("cpu"), amp=False)
                Distiller(copy.deepcopy(model), frozen, source, technique.losses).setup(pipe, batch)
            except UsageError as err:
                raise UsageError(f"student {label} x technique {technique.label}: {err}") from None
    return students


def build_caches(cfg: StudyConfig, pending: list[tuple[int, TechniqueConfig]], teacher_path: Path,
                 cache_dir: Path, log=print) -> None:
    """Build (or find) the teacher cache of every (seed, teacher layers) the pending cells use."""
    from edgedistill import api
    from edgedistill.distill.cache import CacheSource
    from edgedistill.train.device import resolve_device

    if cfg.teacher.mode != "cache":
        return
    teacher = api.load_model(teacher_path)
    device = resolve_device(cfg.train.device)
    c = cfg.teacher.cache
    for seed in dict.fromkeys(seed for seed, _ in pending):
        layer_sets = {tuple(teacher_layers(teacher, t)) for s, t in pending if s == seed}
        train_data, test_data = api.build_data(cfg.data, seed)
        train_pipe, _ = api.build_pipelines(cfg.data, train_data, test_data, seed, device,
                                            num_draws=c.num_draws)
        for layers in sorted(layer_sets):
            log(f"teacher cache for seed {seed}, layers {list(layers) or 'logits only'}")
            source = CacheSource(copy.deepcopy(teacher), cache_dir, device, num_draws=c.num_draws, top_k=c.top_k,
                                 batch_size=c.batch_size, amp=cfg.train.amp, log=log)
            source.attach(list(layers), train_pipe)
            source.close()

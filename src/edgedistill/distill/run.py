"""``edgedistill distill``: build teacher, student, source and Distiller from a config
and train. The run directory also records the teacher's accuracy and the student's
size, so reports compare without re-running the teacher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgedistill import api
from edgedistill.config import DistillExperiment, StudentConfig
from edgedistill.distill.distiller import Distiller
from edgedistill.distill.provenance import require_finished, teacher_provenance
from edgedistill.distill.sources import OnlineSource, TeacherSource
from edgedistill.errors import UsageError
from edgedistill.train.callbacks import Callback, PrintProgress
from edgedistill.train.device import resolve_device
from edgedistill.train.halting import halting_callbacks
from edgedistill.train.trainer import Trainer, evaluate


def build_student(cfg: StudentConfig, teacher: nn.Module, num_classes: int,
                  in_channels: int) -> nn.Module:
    from edgedistill.models import create_model, derive_student

    if cfg.name:
        return create_model(cfg.name, num_classes=num_classes, in_channels=in_channels,
                            **cfg.kwargs)
    spec = derive_student(teacher.spec, cfg.derive, depth=cfg.depth, width=cfg.width)
    return create_model(**spec)


def check_teacher_fits(teacher: nn.Module, data, source: str) -> None:
    spec = getattr(teacher, "spec", {})
    want = {"num_classes": data.num_classes, "in_channels": data.images.shape[1]}
    for key, value in want.items():
        if spec.get(key) not in (None, value):
            raise UsageError(f"teacher {source!r} has {key}={spec[key]} but dataset "
                             f"{data.name!r} has {value}; pick a teacher trained on this data")


def build_source(cfg: DistillExperiment, teacher: nn.Module, device: torch.device,
                 run_dir: Path) -> TeacherSource:
    mode = cfg.teacher.mode
    if mode == "online":
        return OnlineSource(teacher, device, cfg.train.amp)
    if mode == "cache":
        from edgedistill.distill.cache import CacheSource

        c = cfg.teacher.cache
        root = Path(c.dir) if c.dir else run_dir.parent / ".teacher_cache"
        return CacheSource(teacher, root, device, num_draws=c.num_draws, top_k=c.top_k,
                           batch_size=c.batch_size, amp=cfg.train.amp, precision=c.precision)
    from edgedistill.elastic.source import PoolSource

    return PoolSource(cfg.teacher.source, cfg.teacher.pool, device)


class TeacherReference(Callback):
    """Adds the teacher's accuracy and the student-teacher agreement to each epoch, on the
    test set and, when the run holds one out, on the validation set."""

    def __init__(self, test: dict[str, Any], val: dict[str, Any] | None = None):
        self.test, self.val = test, val

    def on_epoch_end(self, trainer, record: dict[str, Any]) -> None:
        record["teacher_acc"] = self.test["acc"]
        record["agreement"] = agreement(trainer.last_eval_preds, self.test["preds"])
        if self.val is not None:
            record["teacher_val_acc"] = self.val["acc"]
            record["val_agreement"] = agreement(trainer.last_val_preds, self.val["preds"])
        return None


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a == b).float().mean().item()


def run_distill(cfg: DistillExperiment, out: str | Path, resume: bool = False,
                progress: bool = True) -> dict[str, Any]:
    from edgedistill.models import student_name, summarize

    provenance = teacher_provenance(cfg.teacher.source)
    require_finished(provenance, cfg.teacher.allow_unfinished)
    run_dir = api.check_run_dir(out, resume)  # the trainer creates it, once all is built
    api.configure_torch(cfg)
    device = resolve_device(cfg.train.device)
    train_data, val_data, test_data = api.build_splits(cfg.data, cfg.seed)
    teacher = api.load_model(cfg.teacher.source)
    check_teacher_fits(teacher, train_data, cfg.teacher.source)
    student = build_student(cfg.student, teacher, train_data.num_classes,
                            train_data.images.shape[1])
    draws = cfg.teacher.cache.num_draws if cfg.teacher.mode == "cache" else None
    train_pipe, test_pipe = api.build_pipelines(cfg.data, train_data, test_data, cfg.seed,
                                                device, num_draws=draws)
    val_pipe = api.eval_pipeline(cfg.data, val_data, cfg.seed, device)
    teacher_eval = evaluate(teacher.to(device), test_pipe, device, cfg.train.amp)
    teacher_val = evaluate(teacher, val_pipe, device, cfg.train.amp) if val_pipe else None
    source = build_source(cfg, teacher, device, run_dir)
    try:  # a pool source holds Ray processes from attach on: release them on any error
        distiller = Distiller(student, teacher, source, cfg.losses)
        distiller.setup(train_pipe, train_pipe.batch(0, 0))
        callbacks: list[Callback] = [TeacherReference(teacher_eval, teacher_val)]
        callbacks += halting_callbacks(cfg, has_teacher=True)
        if progress and cfg.train.progress:
            callbacks.append(PrintProgress())
        shape = (1, *train_data.images.shape[1:])
        info = summarize(student, shape)
        extra = {"student": student_name(student.spec), "teacher": cfg.teacher.source,
                 "teacher_acc": teacher_eval["acc"], "teacher_provenance": provenance,
                 "student_params": info["params"],
                 "student_flops": info["flops"], "teacher_mode": cfg.teacher.mode,
                 **({"teacher_val_acc": teacher_val["acc"]} if teacher_val else {})}
        trainer = Trainer(distiller, train_pipe, test_pipe, cfg, run_dir, callbacks, device,
                          summary_extra=extra, val_pipe=val_pipe)
        return trainer.fit(resume=resume)
    finally:
        source.close()

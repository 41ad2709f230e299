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
from edgedistill.distill.sources import SOURCES, TeacherSource
from edgedistill.errors import UsageError
from edgedistill.train.callbacks import Callback, PrintProgress
from edgedistill.train.device import resolve_device
from edgedistill.train.halting import halting_callbacks
from edgedistill.train.trainer import Trainer, evaluate


def build_student(cfg: StudentConfig, teacher: nn.Module, num_classes: int,
                  in_channels: int) -> nn.Module:
    from edgedistill.models import create_model, derive_student

    if cfg.name or cfg.factory:
        return api.build_model(cfg, num_classes, in_channels)
    if not getattr(teacher, "spec", None):
        raise UsageError(f"student.derive: the teacher ({type(teacher).__name__}, given as a "
                         "Python module) has no model spec to derive from; give the student "
                         "itself (student.name, student.factory or a module)")
    spec = derive_student(teacher.spec, cfg.derive, depth=cfg.depth, width=cfg.width)
    return create_model(**spec)


def check_teacher_fits(teacher: nn.Module, data, source: str) -> None:
    spec = getattr(teacher, "spec", {})
    want = {"num_classes": data.num_classes, "in_channels": data.image_shape[0]}
    for key, value in want.items():
        if spec.get(key) not in (None, value):
            raise UsageError(f"teacher {source!r} has {key}={spec[key]} but dataset "
                             f"{data.name!r} has {value}; pick a teacher trained on this data")


def build_source(cfg: DistillExperiment, teacher: nn.Module, device: torch.device,
                 run_dir: Path) -> TeacherSource:
    """The teacher source ``teacher.mode`` names (a ``SOURCES`` entry), from the config."""
    return SOURCES.get(cfg.teacher.mode).from_config(cfg, teacher, device, run_dir)


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


def resolve_teacher(cfg: DistillExperiment, data, teacher: nn.Module | None) -> nn.Module:
    """The teacher module: the one given, or the one ``teacher.source`` names. A model
    config (factory, torchvision:, timm:) is built for the dataset's classes and channels,
    which are then written into its kwargs so pool replicas build the same network."""
    from edgedistill.config import ModelConfig

    if teacher is not None:
        if SOURCES.get(cfg.teacher.mode).rebuilds_teacher:
            raise UsageError(f"teacher.mode {cfg.teacher.mode} needs a teacher its replicas "
                             "can build (zoo:NAME, a run, a file or {factory: ...}), not a "
                             "Python module")
        return teacher.eval()
    source = cfg.teacher.source
    if isinstance(source, ModelConfig) and SOURCES.get(cfg.teacher.mode).rebuilds_teacher \
            and not (source.weights or source.pretrained):
        raise UsageError(f"teacher.mode {cfg.teacher.mode} with a model config needs "
                         "teacher.source.weights (or pretrained: true): each replica would "
                         "draw its own random weights")
    teacher = api.load_model(source, data.num_classes, data.image_shape[0])
    if isinstance(source, ModelConfig):
        sizes = {k: teacher.spec[k] for k in ("num_classes", "in_channels") if k in teacher.spec}
        cfg.teacher.source = source.model_copy(update={"kwargs": {**sizes, **source.kwargs}})
    return teacher


def run_distill(cfg: DistillExperiment, out: str | Path, resume: bool = False,
                progress: bool = True, *, teacher: nn.Module | None = None,
                student: nn.Module | None = None, splits: tuple | None = None
                ) -> dict[str, Any]:
    """Distil as ``cfg`` says; returns the run's summary. ``teacher``, ``student`` (built
    modules) and ``splits`` ((train, validation or None, test) ``ImageData``) stand in for
    the ones the config names: the Python API passes a user's own this way."""
    from edgedistill.models import student_name, summarize

    provenance = teacher_provenance(cfg.teacher.source if teacher is None else teacher)
    require_finished(provenance, cfg.teacher.allow_unfinished)
    run_dir = api.check_run_dir(out, resume)  # the trainer creates it, once all is built
    api.configure_torch(cfg)
    device = resolve_device(cfg.train.device)
    train_data, val_data, test_data = splits or api.build_splits(cfg.data, cfg.seed)
    teacher = resolve_teacher(cfg, train_data, teacher)
    check_teacher_fits(teacher, train_data, provenance["source"])
    if student is None:
        student = build_student(cfg.student, teacher, train_data.num_classes,
                                train_data.image_shape[0])
    draws = SOURCES.get(cfg.teacher.mode).pipeline_draws(cfg)
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
        shape = (1, *train_data.image_shape)
        info = summarize(student, shape)
        spec = getattr(student, "spec", None)
        extra = {"student": student_name(spec) if spec else f"python {type(student).__name__}",
                 "teacher": provenance["source"],
                 "teacher_acc": teacher_eval["acc"], "teacher_provenance": provenance,
                 "student_params": info["params"],
                 "student_flops": info["flops"], "teacher_mode": cfg.teacher.mode,
                 **({"teacher_val_acc": teacher_val["acc"]} if teacher_val else {})}
        trainer = Trainer(distiller, train_pipe, test_pipe, cfg, run_dir, callbacks, device,
                          summary_extra=extra, val_pipe=val_pipe)
        return trainer.fit(resume=resume)
    finally:
        source.close()

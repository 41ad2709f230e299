"""``edgedistill check CONFIG``: is this experiment ready to run, and what will it run?

Validates the YAML (any kind: train, distill, study, split; device and compute profiles
too), builds the teacher and
every student on the dataset's shapes, counts their parameters and FLOPs, builds each
Distiller (loss layers resolve, adaptors build) on one batch, and prints the plan.

Data is touched as little as possible: a dataset that streams from disk (imagefolder,
webdataset) is listed and one batch is read; the small built-in sets (Fashion-MNIST,
CIFAR, ...) are held in single files that their loaders read whole. When the data is
absent the check still builds the models, from the dataset's known shapes (or
``data.num_classes``), and says which data is missing and how to get it. Weights that
are not here yet (a teacher still to be trained, ``pretrained: true`` offline) are
named the same way; the architecture is built without them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from edgedistill.errors import DataMissingError, UsageError
from edgedistill.registry import Registry

CHECKS = Registry("config kind")
CPU = torch.device("cpu")
# (channels, side, classes) of the built-in sets, for building models without their files
KNOWN_SHAPES = {"fashion_mnist": (1, 28, 10), "mnist_subset": (1, 28, 10),
                "digits": (1, 8, 10), "cifar10": (3, 32, 10), "cifar100": (3, 32, 100)}


@dataclass
class DataPlan:
    dataset: str
    mode: str
    shape: tuple[int, int, int] | None = None
    num_classes: int | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    steps: int | None = None
    batch: Any = None
    missing: str | None = None

    def lines(self) -> list[str]:
        head = f"data: {self.dataset} ({self.mode})"
        if self.shape:
            head += f", input {'x'.join(map(str, self.shape))}, {self.num_classes} classes"
        out = [head]
        if self.sizes:
            out.append("  " + ", ".join(f"{k} {v}" for k, v in self.sizes.items())
                       + (f" images; {self.steps} steps per epoch" if self.steps else ""))
        if self.batch is not None:
            out.append(f"  read one batch: {tuple(self.batch.images.shape)}")
        if self.missing:
            out += ["  MISSING: " + line for line in self.missing.splitlines()]
        return out


def data_plan(cfg, seed: int, log=print) -> DataPlan:
    """The data's shapes and sizes and one batch read from it, or what is missing."""
    from edgedistill import api
    from edgedistill.data.stream_sources import STREAM_SOURCES, load_streaming, wants_streaming

    plan = DataPlan(cfg.dataset, "in memory")
    try:
        if cfg.dataset in STREAM_SOURCES:
            if wants_streaming(cfg, log):
                plan.mode = f"streaming, {cfg.workers} workers, transform {cfg.transform}"
            else:  # read one batch as the in-memory loader decodes it, without decoding all
                cfg = cfg.model_copy(update={"transform": "fit", "transform_options": {}})
            train, val, test = api.limit_splits(cfg, seed, *load_streaming(cfg, seed))
            pipe = api.streaming_pipeline(cfg.model_copy(update={"workers": 0}), train, True,
                                          seed, CPU)
        else:
            train, val, test = api.build_splits(cfg, seed, log)
            pipe, _ = api.build_pipelines(cfg, train, test, seed, CPU)
        plan.batch = pipe.batch(0, 0)
    except DataMissingError as err:
        plan.missing = str(err)
        shape = KNOWN_SHAPES.get(cfg.dataset)
        side = cfg.options.get("image_size", shape[1] if shape else None)
        if side is not None:
            plan.shape = (shape[0] if shape else 3, int(side), int(side))
        plan.num_classes = cfg.num_classes or (shape[2] if shape else None)
        if cfg.dataset == "cifar100" and cfg.options.get("labels") == "coarse":
            plan.num_classes = cfg.num_classes or 20
        return plan
    plan.shape, plan.num_classes = tuple(train.image_shape), train.num_classes
    if cfg.num_classes is not None and cfg.num_classes != train.num_classes:
        raise UsageError(f"data.num_classes is {cfg.num_classes} but {cfg.dataset} under "
                         f"{cfg.root or 'its folder'} has {train.num_classes} classes")
    plan.sizes = {"train": len(train), **({"val": len(val)} if val is not None else {}),
                  "test": len(test)}
    plan.steps = len(pipe)
    return plan


def teacher_model(source, plan: DataPlan, config: Path, what: str = "teacher.source"):
    """(the teacher, a note when its weights are not here). Built bare when they are
    not: a model config whose weights file or published weights are missing, or a run
    directory not trained yet by a train config beside this one (``runs/NAME``)."""
    from edgedistill import api
    from edgedistill.config import ModelConfig

    sizes = (plan.num_classes, plan.shape[0] if plan.shape else None)
    try:
        return api.load_model(source, *sizes), None
    except UsageError as err:
        if isinstance(source, ModelConfig) and (source.weights or source.pretrained):
            bare = source.model_copy(update={"weights": None, "pretrained": False})
            return api.load_model(bare, *sizes), f"weights not loaded here: {err}"
        maker = trainer_of(source, config) if isinstance(source, str) else None
        if maker is None and isinstance(source, str) and not source.startswith("zoo:") \
                and not Path(source).exists():
            raise TeacherMissing(source, config) from None
        if maker is None:
            raise UsageError(f"{what}: {err}") from None
        model_cfg, maker_path = maker
        bare = model_cfg.model_copy(update={"weights": None, "pretrained": False})
        return api.load_model(bare, *sizes), (
            f"weights not loaded here: {source} is not trained yet; make it with "
            f"`edgedistill train {maker_path} --out {source}`")


class TeacherMissing(UsageError):
    """A teacher path that is not here and that no config beside this one trains."""

    def __init__(self, source: str, config: Path):
        super().__init__(f"teacher {source} not found")
        self.lines = [f"  MISSING: teacher {source} does not exist, so the models built on it "
                      "are not checked",
                      f"  MISSING: To get it: make it as the header comment of {config} says, "
                      "or set teacher.source to where it is"]


def trainer_of(source: str, config: Path):
    """(model config, path) of the train config beside ``config`` whose default run
    directory (runs/NAME) is ``source``: the teacher a reference config chain trains."""
    from edgedistill.config import TrainExperiment, load_config, read_yaml_mapping

    target = Path(source)
    target = target.parent if target.suffix == ".safetensors" else target
    for path in sorted(config.parent.glob("*.yaml")):
        raw = read_yaml_mapping(path)
        if "model" in raw and Path("runs") / str(raw.get("name", "")) == target:
            return load_config(path, TrainExperiment).model, path
    return None


def model_line(role: str, model, shape) -> str:
    from edgedistill.models import student_name, summarize

    info = summarize(model, shape)
    spec = getattr(model, "spec", None)
    try:
        name = student_name(spec) if spec else type(model).__name__
    except (UsageError, KeyError, ValueError):
        name = spec.get("name", type(model).__name__)
    return (f"{role}: {name}, {info['params'] / 1e6:.3f} M parameters, "
            f"{info['flops'] / 1e9:.3f} GFLOPs per image")


class ProbeBatch:
    """A batch of two images of the data's shape, when the data itself is absent."""

    def __init__(self, shape, num_classes: int):
        gen = torch.Generator().manual_seed(0)
        self.images = torch.randn(2, *shape, generator=gen)
        self.raw = torch.zeros(2, *shape, dtype=torch.uint8)
        self.labels = torch.arange(2) % num_classes
        self.indices = torch.arange(2)
        self.epoch, self.step, self.draw = 0, 0, 0

    def __len__(self) -> int:
        return 2


def probe(plan: DataPlan):
    """Two samples to build Distillers on: the batch read, or random images of its shape."""
    if plan.batch is not None:
        return _first(plan.batch)
    return ProbeBatch(plan.shape, plan.num_classes)


def _first(batch):
    """The first two samples of a real batch: enough to build adaptors, cheap at 224 px."""
    from edgedistill.data import Batch

    return Batch(batch.images[:2], batch.raw[:2], batch.labels[:2], batch.indices[:2],
                 batch.epoch, batch.step, batch.draw)


def need_shape(plan: DataPlan) -> None:
    if plan.shape is None or plan.num_classes is None:
        raise UsageError(f"data: {plan.missing}\nand the models cannot be built without the "
                         "data's shape: set data.options.image_size and data.num_classes")


def distiller_lines(student, teacher, losses, batch, label: str) -> None:
    """Build the Distiller on one batch: its loss layers resolve and adaptors build."""
    import copy

    from edgedistill.distill.distiller import Distiller
    from edgedistill.distill.sources import OnlineSource

    frozen = copy.deepcopy(teacher)
    try:
        Distiller(copy.deepcopy(student), frozen, OnlineSource(frozen, CPU, amp=False),
                  losses).setup(None, batch)
    except UsageError as err:
        raise UsageError(f"{label}: {err}") from None


@CHECKS.register("train")
def check_train(path: Path, overrides: list[str], log=print) -> list[str]:
    """A TrainExperiment: one model trained on a dataset."""
    from edgedistill.config import TrainExperiment, load_config

    cfg = load_config(path, TrainExperiment, overrides)
    plan = data_plan(cfg.data, cfg.seed, log)
    need_shape(plan)
    model, note = teacher_model(cfg.model, plan, path, "model")
    return [f"train {cfg.name}: {cfg.train.epochs} epochs", *plan.lines(),
            model_line("model", model, plan.shape), *([f"  {note}"] if note else [])]


@CHECKS.register("distill")
def check_distill(path: Path, overrides: list[str], log=print) -> list[str]:
    """A DistillExperiment: a student distilled from a teacher with loss terms."""
    from edgedistill.config import DistillExperiment, load_config
    from edgedistill.distill.run import build_student

    cfg = load_config(path, DistillExperiment, overrides)
    plan = data_plan(cfg.data, cfg.seed, log)
    need_shape(plan)
    head = (f"distill {cfg.name}: {cfg.train.epochs} epochs, teacher mode {cfg.teacher.mode}, "
            "losses " + ", ".join(t.name + (f" x{t.weight:g}" if t.weight is not None else "")
                                  for t in cfg.losses))
    try:
        teacher, note = teacher_model(cfg.teacher.source, plan, path)
    except TeacherMissing as err:
        return [head, *plan.lines(), *err.lines]
    student = build_student(cfg.student, teacher, plan.num_classes, plan.shape[0])
    distiller_lines(student, teacher, cfg.losses, probe(plan), "losses")
    return [head, *plan.lines(), model_line("teacher", teacher, plan.shape),
            *([f"  {note}"] if note else []), model_line("student", student, plan.shape)]


@CHECKS.register("study")
def check_study(path: Path, overrides: list[str], log=print) -> list[str]:
    """A StudyConfig: students x techniques x seeds on one teacher."""
    from edgedistill.config.study import load_study
    from edgedistill.distill.run import build_student
    from edgedistill.study.techniques import resolve_techniques

    cfg = load_study(path, overrides)
    techniques = resolve_techniques(cfg)
    plan = data_plan(cfg.data, cfg.seeds[0], log)
    need_shape(plan)
    head = (f"study {cfg.name}: {len(cfg.students)} students x {len(cfg.techniques)} "
            f"techniques x {len(cfg.seeds)} seeds, {cfg.train.epochs} epochs each")
    try:
        teacher, note = teacher_model(cfg.teacher.source, plan, path)
    except TeacherMissing as err:
        return [head, *plan.lines(), *err.lines]
    batch = probe(plan)
    lines = [head, *plan.lines(), model_line("teacher", teacher, plan.shape),
             *([f"  {note}"] if note else [])]
    for entry, label in zip(cfg.students, cfg.student_labels(), strict=True):
        try:
            student = build_student(entry.student_config(), teacher, plan.num_classes,
                                    plan.shape[0])
        except UsageError as err:
            raise UsageError(f"students: {label}: {err}") from None
        for technique in techniques:
            distiller_lines(student, teacher, technique.losses, batch,
                            f"student {label} x technique {technique.label}")
        lines.append(model_line(f"student {label}", student, plan.shape))
    lines.append("techniques: " + ", ".join(t.label for t in techniques))
    return lines


@CHECKS.register("split")
def check_split(path: Path, overrides: list[str], log=print) -> list[str]:
    """A SplitExperiment: the teacher cut into head and tail at one split point."""
    from edgedistill.config import load_config
    from edgedistill.config.split import SplitExperiment
    from edgedistill.split.model import head_output_shape

    cfg = load_config(path, SplitExperiment, overrides)
    plan = data_plan(cfg.data, cfg.seed, log)
    need_shape(plan)
    if cfg.input.size or cfg.input.channels:
        plan.shape = (cfg.input.channels or plan.shape[0], *(2 * [cfg.input.size or
                                                                 plan.shape[1]]))
    head = (f"split {cfg.name}: split at {cfg.teacher.split_at}, bottlenecks "
            f"{cfg.bottleneck.channels}")
    try:
        teacher, note = teacher_model(cfg.teacher.source, plan, path)
    except TeacherMissing as err:
        return [head, *plan.lines(), *err.lines]
    cut = head_output_shape(teacher, cfg.teacher.split_at, plan.shape)
    return [head, *plan.lines(), model_line("teacher", teacher, plan.shape),
            *([f"  {note}"] if note else []),
            f"head output: {'x'.join(map(str, cut))} ({_count(cut)} values per image)"]


@CHECKS.register("device")
def check_device(path: Path, overrides: list[str], log=print) -> list[str]:
    """A device profile (``design``): budgets in storage, activations and time."""
    from edgedistill.design.profiles import load_profile

    if overrides:
        raise UsageError("--set applies to experiments, not to device profiles")
    profile = load_profile(path)
    return [f"device profile {profile.name}: " + ", ".join(
        f"{k} {v}" for k, v in profile.model_dump().items() if k not in ("name", "source")
        and v is not None)]


@CHECKS.register("compute")
def check_compute(path: Path, overrides: list[str], log=print) -> list[str]:
    """A compute profile of the split planner: how fast a machine runs models."""
    from edgedistill.split.planner import load_profile

    if overrides:
        raise UsageError("--set applies to experiments, not to compute profiles")
    profile = load_profile(str(path))
    return [f"compute profile {profile.name}: slowdown x{profile.slowdown:g}, gflops "
            f"{profile.gflops}, overhead {profile.overhead_ms:g} ms"]


def _count(shape) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


def detect_kind(raw: dict, path: Path) -> str:
    """Which schema a YAML mapping is written for, from its top-level keys."""
    teacher = raw.get("teacher")
    if "students" in raw:
        return "study"
    if isinstance(teacher, dict) and ("split_at" in teacher or "bottleneck" in raw):
        return "split"
    if "teacher" in raw:
        return "distill"
    if "model" in raw:
        return "train"
    if {"storage_bytes", "max_time_ms", "flops_per_s", "latency_model"} & set(raw):
        return "device"
    if {"slowdown", "gflops", "overhead_ms"} & set(raw):
        return "compute"
    raise UsageError(f"{path}: cannot tell which experiment this is (no model, teacher or "
                     f"students key); check takes {', '.join(CHECKS.names())} configs")


def check(path: str | Path, overrides: list[str] = (), kind: str | None = None,
          log=print) -> list[str]:
    """The plan of the experiment in ``path`` as lines; raises ``UsageError`` if invalid."""
    from edgedistill.config import read_yaml_mapping

    path = Path(path)
    kind = kind or detect_kind(read_yaml_mapping(path), path)
    return CHECKS.get(kind)(path, list(overrides), log)

"""Every example config validates, and every distillation config builds its Distiller
on the real architectures (layers resolve, adaptors build) without training."""

from pathlib import Path

import pytest
import torch

from edgedistill import api
from edgedistill.config import DistillExperiment, TrainExperiment, load_config
from edgedistill.distill.distiller import Distiller
from edgedistill.distill.run import build_student
from edgedistill.distill.sources import OnlineSource

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "fashion_mnist").glob("*.yaml"))


class FakeBatch:
    def __init__(self, n=4):
        self.images = torch.randn(n, 1, 28, 28)
        self.labels = torch.arange(n) % 10
        self.indices = torch.arange(n)
        self.epoch, self.step, self.draw = 0, 0, 0


def test_there_are_configs_for_every_method():
    names = {p.stem for p in CONFIGS}
    assert {"teacher_resnet20", "teacher_resnet56", "kd_resnet8", "hint_kd_resnet8",
            "crd_resnet8", "kd_resnet20_w0.5"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_validates_and_builds(path):
    if path.stem.startswith(("teacher_", "student_")):
        cfg = load_config(path, TrainExperiment)
        assert cfg.model.name
        return
    cfg = load_config(path, DistillExperiment)
    teacher = api.load_model(cfg.teacher.source)
    student = build_student(cfg.student, teacher, 10, 1)
    distiller = Distiller(student, teacher, OnlineSource(teacher, torch.device("cpu")), cfg.losses)
    distiller.setup(None, FakeBatch())
    logits, losses = distiller(FakeBatch())
    assert logits.shape == (4, 10)
    assert set(losses) == {(t.label or t.name).replace(".", "_") for t in cfg.losses}
    assert all(torch.isfinite(v) for v in losses.values())


EVERY_CONFIG = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", EVERY_CONFIG,
                         ids=lambda p: str(p.relative_to(p.parents[1])))
def test_edgedistill_check_passes_on_every_config(path):
    """``edgedistill check`` validates each config and builds its models; data or weights
    absent from this machine are named with how to get them."""
    from edgedistill.check import check

    lines = check(path)
    text = "\n".join(lines)
    assert lines and "Traceback" not in text
    if "MISSING:" in text:
        assert "To get it:" in text
    if any(line.startswith(("teacher:", "model:")) for line in lines):
        assert "M parameters" in text and "GFLOPs per image" in text

"""Weight layout: channels_last by default where it is safe, NCHW for models with a layer
that crashes in channels_last on CPU with this torch, and the same training either way."""

import json
import subprocess
import sys

import pytest
import torch

from edgedistill import api
from edgedistill.config import TrainExperiment
from edgedistill.errors import UsageError
from edgedistill.models import create_model
from edgedistill.train.device import channels_last_hazard, memory_format, to_layout
from tests.conftest import tiny_train_config

CPU = torch.device("cpu")


def is_channels_last(model) -> bool:
    w = next(m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)
             and m.in_channels > 1)
    return w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()


def test_memory_format_names():
    assert memory_format("auto") is torch.channels_last
    assert memory_format("contiguous") is torch.contiguous_format
    with pytest.raises(UsageError, match="memory_format 'nhwc'"):
        memory_format("nhwc")


def test_auto_is_channels_last_unless_a_layer_is_hazardous():
    safe = create_model("resnet8", num_classes=10, in_channels=1, width=0.5)
    narrow = create_model("resnet8", num_classes=10, in_channels=1, width=0.25)
    assert channels_last_hazard(safe) is None
    assert channels_last_hazard(narrow) == "layer2.0.downsample.0"
    assert is_channels_last(to_layout(safe, CPU, "auto"))
    assert not is_channels_last(to_layout(narrow, CPU, "auto"))
    with pytest.raises(UsageError, match="layer2.0.downsample.0"):
        to_layout(narrow, CPU, "channels_last")
    assert not is_channels_last(to_layout(safe, CPU, "contiguous"))


GRID = """
import torch
from edgedistill.train.device import to_layout
torch.set_num_threads(1)
for cin in range(2, 9):
    m = torch.nn.Sequential(torch.nn.Conv2d(1, cin, 3, padding=1), torch.nn.ReLU(),
                            torch.nn.Conv2d(cin, 8, 1, 2, bias=False), torch.nn.BatchNorm2d(8))
    m = to_layout(m, torch.device("cpu"), "auto")
    x = torch.randn(64, 1, 28, 28)  # as the pipelines deliver batches
    for _ in range(3):
        m(x).sum().backward()
print("survived")
"""


def test_auto_layout_survives_the_shapes_that_crash_channels_last():
    """In a subprocess, since the unguarded layout aborts the interpreter."""
    run = subprocess.run([sys.executable, "-c", GRID], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and "survived" in run.stdout, run.stderr[-2000:]


def test_contiguous_and_channels_last_train_alike(tmp_path):
    """The layout changes speed, not the mathematics: same seed, same loss to float
    rounding."""
    loss = {}
    for fmt in ("contiguous", "channels_last"):
        cfg = TrainExperiment.model_validate(tiny_train_config(**{
            "model.kwargs": {"width": 0.5}, "data.limit_train": 256, "data.limit_test": 128,
            "train.epochs": 1, "train.memory_format": fmt}))
        api.train(cfg, tmp_path / fmt, progress=False)
        record = json.loads((tmp_path / fmt / "metrics.jsonl").read_text().splitlines()[0])
        loss[fmt] = record["train_loss"]
    assert loss["channels_last"] == pytest.approx(loss["contiguous"], rel=1e-3)

"""A tiny trained split run shared by the split tests (synthetic data, resnet8 teacher)."""

from __future__ import annotations

import secrets

import pytest
import torch

from edgedistill.config import validate
from edgedistill.config.split import SplitExperiment
from edgedistill.models import create_model
from edgedistill.train.checkpoint import save_weights
from tests.conftest import set_dotted

DATA = {"dataset": "synthetic", "batch_size": 32, "eval_batch_size": 64,
        "options": {"channels": 1, "image_size": 16, "num_train": 128, "num_test": 64}}


def tiny_split_config(teacher: str, **over) -> dict:
    cfg = {"name": "tiny_split", "seed": 0, "data": DATA,
           "teacher": {"source": teacher, "split_at": "layer1"},
           "bottleneck": {"channels": [2], "width": 8, "extra_downsample": 1},
           "train": {"epochs": 1, "threads": 1, "progress": False,
                     "optimizer": {"name": "adam", "lr": 0.003, "weight_decay": 0.0}}}
    return set_dotted(cfg, over)


@pytest.fixture(scope="session")
def teacher_file(tmp_path_factory):
    """A resnet8 teacher (random weights: splitting and serving do not need a good one)."""
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10, in_channels=1)
    path = tmp_path_factory.mktemp("teacher") / "resnet8.safetensors"
    save_weights(path, model.state_dict(), model.spec)
    return path


@pytest.fixture(scope="session")
def split_run(tmp_path_factory, teacher_file):
    from edgedistill.split.train import run_split_train

    out = tmp_path_factory.mktemp("split") / "run"
    cfg = validate(tiny_split_config(str(teacher_file)), SplitExperiment)
    run_split_train(cfg, out, progress=False)
    return out


@pytest.fixture(scope="session")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("secret") / "token"
    path.write_text(secrets.token_urlsafe(32) + "\n")
    path.chmod(0o600)
    return path

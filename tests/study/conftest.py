"""A tiny teacher and tiny studies on the synthetic dataset (no files, seconds per cell)."""

from __future__ import annotations

import pytest
import torch
import yaml

DATA = {"dataset": "synthetic", "options": {"num_train": 96, "num_test": 64},
        "batch_size": 32, "eval_batch_size": 64}
TRAIN = {"epochs": 2, "threads": 1, "progress": False,
         "optimizer": {"name": "adam", "lr": 0.003, "weight_decay": 0.0}}


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory):
    """An untrained resnet14 for 16 px RGB: the grid's mechanics need no accuracy."""
    from edgedistill.models import create_model
    from edgedistill.train.checkpoint import save_weights

    torch.manual_seed(0)
    model = create_model("resnet14", num_classes=10, in_channels=3)
    path = tmp_path_factory.mktemp("study_teacher") / "teacher.safetensors"
    save_weights(path, model.state_dict(), model.spec)
    return path


def study_dict(teacher_path, **over) -> dict:
    cfg = {"name": "tiny", "teacher": {"source": str(teacher_path), "cache": {"num_draws": 2}},
           "students": [{"derive": "shallower"}], "techniques": ["none", "kd"],
           "seeds": [0, 1], "data": DATA, "train": TRAIN}
    cfg.update(over)
    return cfg


@pytest.fixture
def study_yaml(tmp_path, tiny_teacher):
    def write(**over):
        path = tmp_path / "study.yaml"
        path.write_text(yaml.safe_dump(study_dict(tiny_teacher, **over)))
        return path

    return write

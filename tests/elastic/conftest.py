"""A tiny random-weight teacher and a synthetic dataset keep elastic tests fast: what is
tested is transport, order, elasticity and fault handling, not accuracy."""

from __future__ import annotations

import pytest
import torch

from edgedistill.config import PoolConfig
from edgedistill.data import BatchPipeline, load_dataset
from edgedistill.models import create_model
from edgedistill.train.checkpoint import save_weights

CPU = torch.device("cpu")
SYNTHETIC = {"num_train": 512, "num_test": 128, "image_size": 16, "channels": 3}


@pytest.fixture(scope="session")
def teacher_file(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10, in_channels=3)
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_weights(path, model.state_dict(), model.spec)
    return path


@pytest.fixture(scope="session")
def data():
    return load_dataset("synthetic", seed=0, **SYNTHETIC)


def train_pipe(data, batch_size: int = 32) -> BatchPipeline:
    train, _ = data
    return BatchPipeline(train, batch_size, train=True, seed=0, augment=train.augment)


def pool_config(**over) -> PoolConfig:
    raw = {"replicas": [{"backend": "torch", "num_cpus": 0.5}], "max_in_flight": 2,
           "deadline_s": 30.0, **over}
    return PoolConfig.model_validate(raw)


@pytest.fixture(scope="module")
def local_ray():
    """One embedded Ray per module with 2 CPUs, shut down after the module."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()

import pytest

from edgedistill import api
from edgedistill.config import TrainExperiment
from tests.conftest import set_dotted, tiny_train_config


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory):
    """A resnet14 trained for 2 short epochs on 1,024 Fashion-MNIST images."""
    out = tmp_path_factory.mktemp("teacher") / "run"
    cfg = TrainExperiment.model_validate(tiny_train_config(
        **{"model.name": "resnet14", "data.limit_train": 1024, "train.epochs": 2}))
    api.train(cfg, out, progress=False)
    return out / "model.safetensors"


def distill_config(teacher, **over) -> dict:
    cfg = {
        "name": "d", "seed": 0,
        "data": {"dataset": "fashion_mnist", "limit_train": 256, "limit_test": 128,
                 "batch_size": 64, "augment": {"enabled": False}},
        "teacher": {"source": str(teacher)},
        "student": {"name": "resnet8", "kwargs": {"width": 0.5}},
        "train": {"epochs": 4, "threads": 1, "progress": False,
                  "optimizer": {"name": "adam", "lr": 0.003, "weight_decay": 0.0}},
    }
    return set_dotted(cfg, over)

import pytest
import torch

from edgedistill.errors import CheckpointError
from edgedistill.train.checkpoint import (
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
)


def test_checkpoint_round_trip(tmp_path):
    state = {"model": {"w": torch.arange(6.0).view(2, 3)}, "epoch": 3, "step": 5,
             "rng_cpu": torch.get_rng_state(), "accum": {"loss_sums": {"ce": 1.5}}}
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, state)
    back = load_checkpoint(path)
    assert torch.equal(back["model"]["w"], state["model"]["w"])
    assert back["epoch"] == 3 and back["accum"]["loss_sums"]["ce"] == 1.5
    assert not list(path.parent.glob("*.tmp"))


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(1000)}})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


class Evil:
    """A pickled class: weights_only loading must refuse to build it."""


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "obj": Evil()}, path)
    with pytest.raises(CheckpointError, match="corrupt or not an edgedistill checkpoint"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")


def test_weights_carry_spec(tmp_path):
    path = tmp_path / "m.safetensors"
    save_weights(path, {"a": torch.zeros(2)}, {"name": "resnet8", "num_classes": 10})
    tensors, spec = load_weights(path)
    assert spec == {"name": "resnet8", "num_classes": 10}
    assert torch.equal(tensors["a"], torch.zeros(2))
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_weights(path)

import json

import pytest
import torch

from edgedistill.errors import CheckpointError, OutputError
from edgedistill.train.checkpoint import (
    check_fits,
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


def test_full_disk_keeps_the_previous_checkpoint_and_names_the_path(tmp_path, fill_disk):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(3)}})
    fill_disk()
    with pytest.raises(OutputError, match="no space left") as err:
        save_checkpoint(path, {"model": {"w": torch.ones(10_000)}})
    assert str(path) in str(err.value) and "previous one is intact" in str(err.value)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.zeros(3))


def test_full_disk_while_writing_weights(tmp_path, fill_disk):
    path = tmp_path / "model.safetensors"
    fill_disk()
    with pytest.raises(OutputError, match="no space left"):
        save_weights(path, {"a": torch.ones(10_000)}, {"name": "resnet8"})
    assert list(tmp_path.iterdir()) == []


def test_next_write_removes_temp_files_of_a_killed_write(tmp_path):
    path = tmp_path / "last.pt"
    stale = tmp_path / ".last.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / ".halt.pt.abc123.tmp"  # another file's write: not this one's to remove
    other.write_bytes(b"x")
    save_checkpoint(path, {"model": {"w": torch.zeros(1)}})
    assert not stale.exists() and other.exists()


def test_empty_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(path)


def test_checkpoint_of_another_model_is_refused_before_loading(tmp_path):
    from edgedistill.models import create_model

    small = create_model("resnet8", num_classes=10, in_channels=1)
    wide = create_model("resnet8", num_classes=10, in_channels=1, width=2)
    state = {"model": wide.state_dict(), "spec": json.dumps(wide.spec)}
    check_fits(wide, state, "ck.pt")
    with pytest.raises(CheckpointError, match=r"conv1\.weight is \[32, 1, 3, 3\] there"):
        check_fits(small, state, "ck.pt")
    deeper = create_model("resnet20", num_classes=10, in_channels=1)
    with pytest.raises(CheckpointError, match="written for resnet8, this config builds resnet20"):
        check_fits(deeper, state, "ck.pt")

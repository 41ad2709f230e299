import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from edgedistill.data import load_dataset
from edgedistill.data.fashion_mnist import FILES, read_idx
from edgedistill.errors import DataMissingError

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)


def fake_raw_dir(root: Path, n_train=20, n_test=10) -> Path:
    """torchvision's layout, mixing plain and gzipped files as a partial download would."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)),
        "train_labels": np.arange(n_train) % 10,
        "test_images": rng.integers(0, 256, (n_test, 28, 28)),
        "test_labels": np.arange(n_test) % 10,
    }
    for key, stem in FILES.items():
        write_idx(raw / (stem + (".gz" if key.endswith("images") else "")), arrays[key])
    return raw


@pytest.fixture(scope="module")
def real():
    if not DEBIAN.is_dir():
        pytest.skip("apt package dataset-fashion-mnist is not installed")
    return load_dataset("fashion_mnist")


def test_real_fashion_mnist(real):
    train, test = real
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and train.images.is_contiguous()
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert train.num_classes == 10 and train.classes[9] == "Ankle boot"
    assert train.mean[0] == pytest.approx(0.2860, abs=1e-3)
    assert train.std[0] == pytest.approx(0.3530, abs=1e-3)
    assert test.mean == train.mean and test.split == "test"
    assert train.augment.hflip and train.augment.crop_pad == 2


def test_torchvision_layout_from_root_and_env(tmp_path, monkeypatch):
    raw = fake_raw_dir(tmp_path)
    train, test = load_dataset("fashion_mnist", root=tmp_path)
    assert train.images.shape == (20, 1, 28, 28) and len(test) == 10
    assert torch.equal(train.images[:, 0], torch.from_numpy(
        read_idx(raw / "train-images-idx3-ubyte.gz")))
    assert train.labels.tolist() == [i % 10 for i in range(20)]
    monkeypatch.setenv("EDGEDISTILL_DATA", str(tmp_path))
    train_env, _ = load_dataset("fashion_mnist")
    assert torch.equal(train_env.images, train.images)


def test_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(DataMissingError) as err:
        load_dataset("fashion_mnist", root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "EDGEDISTILL_DATA" in message


def test_broken_idx_files_are_reported(tmp_path):
    raw = fake_raw_dir(tmp_path)
    (raw / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 0x08, 1, 0, 0, 0, 50, 1, 2]))
    with pytest.raises(DataMissingError, match="truncated"):
        load_dataset("fashion_mnist", root=tmp_path)
    (raw / "train-labels-idx1-ubyte").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DataMissingError, match="not an unsigned-byte IDX"):
        load_dataset("fashion_mnist", root=tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_gz_file_is_named(tmp_path, damage):
    raw = fake_raw_dir(tmp_path)
    path = raw / (FILES["train_images"] + ".gz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not gzip at all")
    with pytest.raises(DataMissingError, match="truncated or damaged") as err:
        read_idx(path)
    assert str(path) in str(err.value)
    with pytest.raises(DataMissingError, match=str(path)):
        load_dataset("fashion_mnist", root=tmp_path)

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from edgedistill.data import load_dataset
from edgedistill.errors import DataMissingError


def dump(path: Path, obj) -> None:
    """Protocol 2 with byte keys and numpy.core globals, as the official files are written."""
    data = pickle.dumps(obj, protocol=2).replace(b"numpy._core.", b"numpy.core.")
    path.write_bytes(data)


def batch(n: int, label_keys: dict, start: int) -> dict:
    data = (np.arange(n * 3072) + start).reshape(n, 3072) % 251
    return {b"data": data.astype(np.uint8), **{k: list(v) for k, v in label_keys.items()}}


def fake_cifar10(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        dump(folder / f"data_batch_{i}", batch(4, {b"labels": [i % 10, 1, 2, 3]}, i))
    dump(folder / "test_batch", batch(3, {b"labels": [7, 8, 9]}, 0))
    dump(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    return folder


def test_cifar10_batches(tmp_path):
    folder = fake_cifar10(tmp_path)
    train, test = load_dataset("cifar10", root=tmp_path)
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (3, 3, 32, 32)
    assert train.labels[:4].tolist() == [1, 1, 2, 3] and test.labels.tolist() == [7, 8, 9]
    assert train.classes == [f"c{i}" for i in range(10)] and train.num_classes == 10
    with open(folder / "data_batch_1", "rb") as f:
        row = pickle.load(f)[b"data"][0]
    assert torch.equal(train.images[0, 1], torch.from_numpy(row[1024:2048].reshape(32, 32)))
    assert train.augment.crop_pad == 4 and train.augment.hflip


def test_cifar100_fine_and_coarse(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    dump(folder / "train", batch(6, {b"fine_labels": range(6), b"coarse_labels": [0] * 6}, 0))
    dump(folder / "test", batch(2, {b"fine_labels": [5, 99], b"coarse_labels": [1, 19]}, 1))
    dump(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                           b"coarse_label_names": [f"g{i}".encode() for i in range(20)]})
    fine, fine_test = load_dataset("cifar100", root=tmp_path)
    assert fine.num_classes == 100 and fine_test.labels.tolist() == [5, 99]
    coarse, coarse_test = load_dataset("cifar100", root=folder, labels="coarse")
    assert coarse.num_classes == 20 and coarse_test.labels.tolist() == [1, 19]
    assert coarse.name == "cifar100_coarse"


def test_cifar_refuses_code_in_pickles(tmp_path):
    folder = fake_cifar10(tmp_path)
    dump(folder / "test_batch", {b"data": Path("/etc/passwd"), b"labels": []})
    with pytest.raises(DataMissingError, match="refusing pathlib"):
        load_dataset("cifar10", root=tmp_path)
    dump(folder / "test_batch", [1, 2, 3])
    with pytest.raises(DataMissingError, match="holds list"):
        load_dataset("cifar10", root=tmp_path)


def test_cifar_missing(tmp_path):
    with pytest.raises(DataMissingError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", root=tmp_path)

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgedistill.data import load_dataset
from edgedistill.errors import DataMissingError, UsageError

COLOURS = {"cat": (255, 0, 0), "dog": (0, 0, 255)}


def make_folder(root: Path, test_name="val") -> Path:
    """Two classes of solid-colour images of mixed sizes and formats."""
    for split, count in (("train", 3), (test_name, 1)):
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (20 + 10 * i, 16), colour).save(folder / f"{i}.png")
            Image.new("L", (12, 30), 128).save(folder / "grey.JPG")
    return root


def test_imagefolder_resizes_once_to_rgb(tmp_path):
    make_folder(tmp_path)
    train, test = load_dataset("imagefolder", root=tmp_path, image_size=8)
    assert train.images.shape == (8, 3, 8, 8) and test.images.shape == (4, 3, 8, 8)
    assert train.classes == ["cat", "dog"]
    assert train.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert torch.equal(train.images[0, :, 4, 4], torch.tensor([255, 0, 0], dtype=torch.uint8))
    assert torch.equal(train.images[3, :, 4, 4], torch.tensor([128, 128, 128], dtype=torch.uint8))
    assert train.augment.crop_pad == 1 and train.augment.hflip
    assert np.allclose(train.mean, [(255 * 3 + 128 * 2) / 8 / 255, 128 * 2 / 8 / 255,
                                    (255 * 3 + 128 * 2) / 8 / 255], atol=0.01)


def test_imagefolder_test_split_and_errors(tmp_path):
    make_folder(tmp_path / "a", test_name="test")
    _, test = load_dataset("imagefolder", root=tmp_path / "a", image_size=4)
    assert len(test) == 4
    with pytest.raises(DataMissingError, match="train/<class>"):
        load_dataset("imagefolder", root=tmp_path)
    (tmp_path / "a" / "test" / "bird").mkdir()
    with pytest.raises(UsageError, match="bird"):
        load_dataset("imagefolder", root=tmp_path / "a")
    (tmp_path / "a" / "test" / "bird").rmdir()
    (tmp_path / "a" / "train" / "cat" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DataMissingError, match="cannot decode"):
        load_dataset("imagefolder", root=tmp_path / "a")

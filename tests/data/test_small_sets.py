import pytest
import torch

from edgedistill.data import load_dataset
from edgedistill.errors import UsageError


def test_mnist_subset_is_a_fixed_stratified_split():
    train, test = load_dataset("mnist_subset")
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255
    assert not train.augment.hflip
    _, again = load_dataset("mnist_subset", seed=5)
    assert torch.equal(again.images, test.images)


def test_digits_scaled_to_bytes_and_split():
    train, test = load_dataset("digits")
    assert train.images.shape == (1437, 1, 8, 8) and len(test) == 360
    assert train.images.dtype == torch.uint8
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    assert set(torch.unique(train.images).tolist()) <= {round(v * 255 / 16) for v in range(17)}
    assert torch.bincount(test.labels).min() >= 35
    assert not train.augment.hflip and train.augment.crop_pad == 1
    with pytest.raises(UsageError, match="num_test"):
        load_dataset("digits", num_test=0)


def test_synthetic_is_seeded_and_learnable():
    train, test = load_dataset("synthetic", num_classes=5, channels=1, image_size=12)
    assert train.images.shape == (512, 1, 12, 12) and train.num_classes == 5
    again, _ = load_dataset("synthetic", num_classes=5, channels=1, image_size=12)
    assert torch.equal(again.images, train.images)
    other, _ = load_dataset("synthetic", num_classes=5, channels=1, image_size=12, data_seed=1)
    assert not torch.equal(other.images, train.images)
    centroids = torch.stack([train.images[train.labels == k].float().mean(0)
                             for k in range(5)]).flatten(1)
    predicted = torch.cdist(test.images.float().flatten(1), centroids).argmin(1)
    assert (predicted == test.labels).float().mean() > 0.9
    with pytest.raises(UsageError, match="noise"):
        load_dataset("synthetic", noise=2.0)

import pytest
import torch

from edgedistill.data import DATASETS, AugmentSpec, ImageData, load_dataset, load_splits
from edgedistill.data.base import channel_stats, stratified_order, stratified_split
from edgedistill.errors import UsageError


def make_data(n=40, classes=4):
    images = torch.zeros(n, 2, 3, 3, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n)
    labels = torch.arange(n) % classes
    return ImageData(images, labels, classes, (0.5, 0.5), (0.25, 0.25),
                     [str(i) for i in range(classes)], "toy")


def test_every_dataset_is_registered():
    assert DATASETS.names() == ["cifar10", "cifar100", "digits", "fashion_mnist",
                                "imagefolder", "mnist_subset", "synthetic"]
    assert all(DATASETS.describe(name) for name in DATASETS)


def test_image_data_checks_its_tensors():
    data = make_data()
    assert len(data) == 40 and data.image_shape == (2, 3, 3)
    assert data.labels.dtype == torch.int64
    with pytest.raises(ValueError, match="uint8"):
        ImageData(data.images.float(), data.labels, 4, (0.5, 0.5), (1.0, 1.0), [], "bad")
    with pytest.raises(ValueError, match="labels"):
        ImageData(data.images, data.labels[:3], 4, (0.5, 0.5), (1.0, 1.0), [], "bad")
    with pytest.raises(ValueError, match="per channel"):
        ImageData(data.images, data.labels, 4, (0.5,), (1.0,), [], "bad")


def test_subset_is_stratified_deterministic_and_in_dataset_order():
    data = make_data(n=200, classes=4)
    sub = data.subset(40, seed=3)
    assert len(sub) == 40
    assert torch.bincount(sub.labels).tolist() == [10, 10, 10, 10]
    assert torch.equal(sub.images, data.subset(40, seed=3).images)
    assert not torch.equal(sub.images, data.subset(40, seed=4).images)
    kept = sub.images[:, 0, 0, 0].to(torch.int64)
    assert torch.all(kept[1:] > kept[:-1])
    assert torch.equal(sub.labels, data.labels[kept])
    assert sub.mean == data.mean and sub.augment == data.augment
    assert data.subset(10_000) is data


def test_stratified_order_prefixes_are_balanced():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    order = stratified_order(labels, seed=0)
    assert sorted(order.tolist()) == list(range(100))
    assert torch.bincount(labels[order[:10]], minlength=3).tolist() == [6, 3, 1]
    train, test = stratified_split(labels, 20, seed=0)
    assert torch.bincount(labels[test]).tolist() == [12, 6, 2]
    assert len(set(train.tolist()) | set(test.tolist())) == 100
    with pytest.raises(UsageError, match="num_test"):
        stratified_split(labels, 100, seed=0)


def test_channel_stats_match_float_computation():
    images = torch.randint(0, 256, (50, 3, 5, 5), dtype=torch.uint8)
    mean, std = channel_stats(images)
    x = images.double() / 255
    assert mean == pytest.approx(x.mean((0, 2, 3)).tolist(), abs=1e-9)
    assert std == pytest.approx(x.std((0, 2, 3), unbiased=False).tolist(), abs=1e-9)


def test_load_dataset_limits_and_options():
    train, test = load_dataset("synthetic", limit_train=100, limit_test=30, seed=1)
    assert (len(train), len(test)) == (100, 30)
    full_train, _ = load_dataset("synthetic")
    assert train.mean == full_train.mean
    _, test_other_seed = load_dataset("synthetic", limit_test=30, seed=2)
    assert torch.equal(test.images, test_other_seed.images)
    with pytest.raises(UsageError, match="image_sise.*options are: channels"):
        load_dataset("synthetic", image_sise=8)
    with pytest.raises(UsageError, match="unknown dataset 'nope'"):
        load_dataset("nope")
    with pytest.raises(UsageError, match="limit_train"):
        load_dataset("synthetic", limit_train=0)


def test_split_off_holds_out_a_stratified_disjoint_part():
    data = make_data(n=200, classes=4)
    rest, held = data.split_off(40, seed=0)
    assert (len(rest), len(held)) == (160, 40) and held.split == "val"
    assert torch.bincount(held.labels).tolist() == [10, 10, 10, 10]
    ids_rest = set(rest.images[:, 0, 0, 0].tolist())
    ids_held = set(held.images[:, 0, 0, 0].tolist())
    assert not ids_rest & ids_held and len(ids_rest | ids_held) == 200
    assert held.mean == data.mean  # normalized like the training set
    for n in (0, 200):
        with pytest.raises(UsageError, match="val_split must be between 1 and 199"):
            data.split_off(n)


def test_load_splits_validation_is_fixed_across_seeds_and_never_trained_on():
    train, val, test = load_splits("synthetic", limit_train=100, val_split=50, seed=1)
    assert (len(train), len(val)) == (100, 50)
    _, val_other_seed, _ = load_splits("synthetic", val_split=50, seed=2)
    assert torch.equal(val.images, val_other_seed.images)
    rows = {tuple(x.flatten().tolist()) for x in train.images}
    assert not rows & {tuple(x.flatten().tolist()) for x in val.images}
    assert load_splits("synthetic")[1] is None
    assert load_dataset("synthetic", limit_train=100, seed=1)[0].images.shape == \
        train.images.shape
    with pytest.raises(UsageError, match="val_split"):
        load_splits("synthetic", val_split=0)


def test_augment_spec():
    assert not AugmentSpec().active
    assert AugmentSpec(crop_pad=0, hflip=True).active
    with pytest.raises(UsageError):
        AugmentSpec(crop_pad=-1)


def test_dataset_options_are_typed_by_the_loader_signature():
    train, _ = load_dataset("synthetic", num_train="40", num_test=20, image_size=8)
    assert len(train) == 40  # "40" converted to the int the loader declares
    for options, needle in (({"num_train": "many"}, "data.options.num_train"),
                            ({"noise": float("nan")}, "data.options.noise"),
                            ({"channels": [1]}, "data.options.channels")):
        with pytest.raises(UsageError, match=needle):
            load_dataset("synthetic", **options)

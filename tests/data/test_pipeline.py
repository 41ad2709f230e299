import pytest
import torch

from edgedistill.data import (
    AugmentSpec,
    BatchPipeline,
    ImageData,
    apply_augment,
    load_dataset,
    normalize,
)
from edgedistill.errors import UsageError

IMAGE = torch.arange(1, 10, dtype=torch.uint8).reshape(1, 1, 3, 3)


@pytest.fixture(scope="module")
def data() -> ImageData:
    train, _ = load_dataset("synthetic", num_train=103, image_size=8, num_classes=4)
    return train


def assert_same_batch(a, b):
    for field in ("images", "raw", "labels", "indices"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert (a.epoch, a.step, a.draw) == (b.epoch, b.step, b.draw)


def test_crop_and_flip_by_hand():
    batch = IMAGE.expand(5, 1, 3, 3)
    offsets = torch.tensor([[1, 1], [0, 0], [2, 1], [0, 2], [1, 1]])
    flips = torch.tensor([False, False, False, True, True])
    out = apply_augment(batch, offsets, flips, pad=1)
    expected = torch.tensor([
        [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
        [[0, 0, 0], [0, 1, 2], [0, 4, 5]],
        [[4, 5, 6], [7, 8, 9], [0, 0, 0]],
        [[0, 0, 0], [0, 3, 2], [0, 6, 5]],
        [[3, 2, 1], [6, 5, 4], [9, 8, 7]],
    ], dtype=torch.uint8)
    assert out.dtype == torch.uint8 and torch.equal(out[:, 0], expected)
    flipped = apply_augment(IMAGE, torch.zeros(1, 2, dtype=torch.int64), torch.tensor([True]), 0)
    assert torch.equal(flipped, IMAGE.flip(3))
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        apply_augment(IMAGE, torch.tensor([[3, 0]]), torch.tensor([False]), pad=1)


def test_normalize():
    out = normalize(torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1),
                    (0.0, 0.2, 0.5), (1.0, 0.5, 0.25))
    assert out.dtype == torch.float32
    assert out.flatten().tolist() == pytest.approx([0.0, 0.0, 2.0])


def test_same_epoch_and_step_give_the_same_batch(data):
    pipe = BatchPipeline(data, 16, train=True, seed=7, augment=data.augment)
    batches = list(pipe.epoch(3))
    other = BatchPipeline(data, 16, train=True, seed=7, augment=data.augment)
    for step in (4, 0, 2):
        assert_same_batch(pipe.batch(3, step), batches[step])
        assert_same_batch(other.batch(3, step), batches[step])
    for batch, resumed in zip(batches[2:], pipe.epoch(3, start_step=2), strict=True):
        assert_same_batch(batch, resumed)
    assert not torch.equal(pipe.batch(4, 0).indices, batches[0].indices)
    assert not torch.equal(BatchPipeline(data, 16, train=True, seed=8).batch(3, 0).indices,
                           batches[0].indices)


def test_batch_is_what_a_remote_teacher_rebuilds(data):
    pipe = BatchPipeline(data, 16, train=True, seed=1, augment=AugmentSpec(2, True))
    batch = pipe.batch(5, 3)
    params = pipe.draw_params(batch.draw)
    assert batch.draw == 5 and params.offsets.shape == (len(data), 2)
    rebuilt = apply_augment(data.images[batch.indices], params.offsets[batch.indices],
                            params.flips[batch.indices], 2)
    assert torch.equal(rebuilt, batch.raw)
    assert torch.equal(normalize(rebuilt, data.mean, data.std), batch.images)
    assert torch.equal(batch.labels, data.labels[batch.indices])
    assert batch.images.dtype == torch.float32 and batch.indices.dtype == torch.int64
    assert params.flips.any() and not params.flips.all()
    assert set(params.offsets.unique().tolist()) == {0, 1, 2, 3, 4}


def test_num_draws_cycle(data):
    pipe = BatchPipeline(data, 16, train=True, seed=0, augment=data.augment, num_draws=3,
                         drop_last=False)

    def by_index(epoch):
        raw = torch.empty_like(data.images)
        for batch in pipe.epoch(epoch):
            raw[batch.indices] = batch.raw
            assert batch.draw == epoch % 3
        return raw

    assert torch.equal(by_index(0), by_index(3))
    assert not torch.equal(by_index(0), by_index(1))
    assert not torch.equal(pipe.order(0), pipe.order(3))
    unaugmented = BatchPipeline(data, 16, train=True, seed=0)
    assert {unaugmented.batch(e, 0).draw for e in range(3)} == {0}


def test_every_sample_once_per_epoch(data):
    full = BatchPipeline(data, 10, train=True, seed=0, drop_last=False)
    assert len(full) == 11
    seen = torch.cat([b.indices for b in full.epoch(2)])
    assert sorted(seen.tolist()) == list(range(103))
    dropped = BatchPipeline(data, 10, train=True, seed=0)
    assert len(dropped) == 10
    seen = torch.cat([b.indices for b in dropped.epoch(2)])
    assert len(set(seen.tolist())) == 100
    with pytest.raises(IndexError):
        dropped.batch(0, 10)


def test_eval_pipeline_is_ordered_and_plain(data):
    pipe = BatchPipeline(data, 25, train=False, seed=0)
    assert len(pipe) == 5 and not pipe.drop_last
    batches = list(pipe.epoch(0))
    assert torch.equal(torch.cat([b.indices for b in batches]), torch.arange(103))
    assert torch.equal(batches[1].raw, data.images[25:50])
    later = pipe.batch(9, 1)
    assert torch.equal(later.images, batches[1].images) and later.draw == 0
    with pytest.raises(UsageError, match="eval pipelines do not augment"):
        BatchPipeline(data, 25, train=False, augment=AugmentSpec(2, False))


def test_bad_arguments(data):
    with pytest.raises(UsageError, match="batch_size"):
        BatchPipeline(data, 0, train=True)
    with pytest.raises(UsageError, match="num_draws"):
        BatchPipeline(data, 8, train=True, num_draws=0)
    with pytest.raises(UsageError, match="no batch"):
        BatchPipeline(data, 500, train=True)


def test_fashion_mnist_epoch_runs_in_batches():
    """Speed sanity without timing: a 20k-image epoch must be a few whole-tensor batches."""
    try:
        train, _ = load_dataset("fashion_mnist", limit_train=20_000)
    except UsageError:
        pytest.skip("Fashion-MNIST is not installed")
    pipe = BatchPipeline(train, 1000, train=True, seed=0, augment=train.augment, num_draws=2)
    total = 0
    for batch in pipe.epoch(1):
        assert batch.images.shape == (1000, 1, 28, 28)
        total += len(batch)
    assert total == 20_000
    assert abs(batch.images.mean().item()) < 0.2

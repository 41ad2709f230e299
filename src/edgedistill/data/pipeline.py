"""The in-memory batch pipeline: seeded order, batched augmentation, normalization.

Everything a batch contains is a pure function of (seed, epoch, step), so

* a resumed run continues from a checkpointed (epoch, step) with the very same batches;
* a teacher somewhere else (a cache, a remote replica) can rebuild the student's exact
  augmented images from the sample indices and the draw number, with ``apply_augment``.

Augmentation parameters are drawn for all samples at once per *draw*; with
``num_draws`` the draws cycle, so each sample is only ever seen in ``num_draws``
augmented versions and teacher outputs for (index, draw) can be cached and reused.

Under data-parallel training each of N ranks holds a pipeline that yields only its
slice of the global batch (``shard``): slice r of batch (seed, epoch, step) is the r-th
of N contiguous pieces, so the N ranks together see exactly the batches of one process.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from edgedistill.data.base import AugmentSpec, ImageData
from edgedistill.errors import UsageError

ORDER_STREAM, AUGMENT_STREAM = 0, 1


@dataclass(eq=False)
class AugDraw:
    """Augmentation parameters for every sample of a dataset, in dataset order.

    ``offsets[i]`` is the (row, col) of the crop's top-left corner in the zero-padded
    image, in ``[0, 2 * crop_pad]`` (``crop_pad`` means no shift); ``flips[i]`` mirrors it.
    """

    offsets: torch.Tensor
    flips: torch.Tensor


@dataclass(eq=False)
class Batch:
    """One batch, all tensors on the pipeline's device.

    ``draw`` is the augmentation draw used (0 when nothing is augmented), so
    (``indices[i]``, ``draw``) names the exact image ``raw[i]`` across epochs.
    """

    images: torch.Tensor
    raw: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    epoch: int
    step: int
    draw: int

    def __len__(self) -> int:
        return self.labels.shape[0]


def stream_generator(seed: int, counter: int, stream: int) -> torch.Generator:
    """A CPU generator for one (seed, epoch-or-draw) pair, independent of every other pair.

    SeedSequence mixes the three numbers, so neighbouring seeds and epochs give
    unrelated streams; CPU generators give the same numbers whatever the device.
    """
    state = np.random.SeedSequence([stream, seed, counter]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def draw_augment(n: int, spec: AugmentSpec, seed: int, draw: int) -> AugDraw:
    """The augmentation parameters of draw ``draw`` for ``n`` samples, vectorized."""
    gen = stream_generator(seed, draw, AUGMENT_STREAM)
    offsets = torch.randint(0, 2 * spec.crop_pad + 1, (n, 2), generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5 if spec.hflip else torch.zeros(n, dtype=torch.bool)
    return AugDraw(offsets, flips)


def apply_augment(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
                  pad: int) -> torch.Tensor:
    """Zero-pad by ``pad``, crop each image at its offset, mirror where ``flips``: uint8 in, out.

    The padded batch is viewed (no copy) as all its ``(2 pad + 1)^2`` crop windows and
    one advanced index picks each image's window; pure indexing, so the result is
    bit-identical on every device, and a GPU does it as one kernel.
    """
    b, c, h, w = images.shape
    device = images.device
    if offsets.device.type == "cpu" and len(offsets) and (
            offsets.min() < 0 or offsets.max() > 2 * pad):
        raise ValueError(f"crop offsets must lie in [0, {2 * pad}]")
    offsets = offsets.to(device=device, dtype=torch.int64)
    flips = flips.to(device)
    windows = F.pad(images, (pad, pad, pad, pad)).unfold(2, h, 1).unfold(3, w, 1)
    crops = windows[torch.arange(b, device=device)[:, None], torch.arange(c, device=device),
                    offsets[:, :1], offsets[:, 1:]]
    return torch.where(flips[:, None, None, None], crops.flip(3), crops)


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 [B,C,H,W] to float32 ``(x / 255 - mean) / std`` with per-channel mean and std."""
    mean = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return images.to(torch.float32).div_(255).sub_(mean).div_(std)


class EpochOrder:
    """The batch plan both pipelines share: which samples step ``step`` of epoch
    ``epoch`` takes, in what order, with which augmentation draw, and which slice of
    them is this data-parallel rank's. A pure function of (seed, epoch, step), so that
    the in-memory and the streaming pipeline visit the same samples in the same order.

    Needs ``data``, ``batch_size``, ``train``, ``seed``, ``augment``, ``drop_last``,
    ``num_draws``; ``init_order`` sets the rest."""

    def init_order(self, shard: tuple[int, int] | None) -> None:
        self._order: tuple[int, torch.Tensor] | None = None
        self.rank, self.world_size = 0, 1
        if len(self) == 0:
            raise UsageError(f"{self.data.name}: {len(self.data)} samples make no batch of "
                             f"{self.batch_size} with drop_last")
        if shard is None:  # a data-parallel rank takes its slice of every batch
            from edgedistill.train.distributed import world

            shard = (world().rank, world().size)
        self.shard(*shard)

    def shard(self, rank: int, world_size: int) -> None:
        """Yield slice ``rank`` of ``world_size`` of every batch (a data-parallel rank's
        share). Training batches must split evenly: DDP averages the ranks' gradients with
        equal weights, which equals the one-process gradient only for equal slices."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        if self.train and self.batch_size % world_size:
            raise UsageError(f"data.batch_size {self.batch_size} does not split into "
                             f"{world_size} equal slices (one per rank); make it a multiple "
                             f"of {world_size}")
        self.rank, self.world_size = rank, world_size

    def shard_of(self, indices: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous piece of a global batch's indices (all of them with one
        rank); eval batches that do not split evenly give the first ranks one more."""
        if self.world_size == 1:
            return indices
        return indices.tensor_split(self.world_size)[self.rank].clone()

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def draw_for_epoch(self, epoch: int) -> int:
        """Which augmentation draw epoch ``epoch`` uses (always 0 without augmentation)."""
        if self.augment is None:
            return 0
        return epoch % self.num_draws if self.num_draws else epoch

    def order(self, epoch: int) -> torch.Tensor:
        """Dataset positions in the order epoch ``epoch`` visits them (CPU, int64)."""
        if self._order is None or self._order[0] != epoch:
            n = len(self.data)
            perm = (torch.randperm(n, generator=stream_generator(self.seed, epoch, ORDER_STREAM))
                    if self.train else torch.arange(n))
            self._order = (epoch, perm)
        return self._order[1]

    def positions(self, epoch: int, step: int) -> torch.Tensor:
        """The dataset positions of this rank's slice of batch ``step`` of ``epoch``."""
        if not 0 <= step < len(self):
            raise IndexError(f"step {step} outside 0..{len(self) - 1}")
        start = step * self.batch_size
        return self.shard_of(self.order(epoch)[start:start + self.batch_size].clone())


class BatchPipeline(EpochOrder):
    """Batches of an ``ImageData`` in a seeded order, augmented and normalized on ``device``.

    Training pipelines shuffle per epoch and may augment; eval pipelines keep dataset
    order and never augment. Only the selected uint8 images, labels and indices cross
    to the device, once per batch; augmentation and normalization run there.
    """

    def __init__(self, data: ImageData, batch_size: int, *, train: bool, seed: int = 0,
                 augment: AugmentSpec | None = None, drop_last: bool | None = None,
                 device: str | torch.device = "cpu", num_draws: int | None = None,
                 shard: tuple[int, int] | None = None):
        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        if seed < 0:
            raise UsageError(f"seed must be >= 0, got {seed}")
        if num_draws is not None and num_draws < 1:
            raise UsageError(f"num_draws must be >= 1, got {num_draws}")
        if not train and augment is not None and augment.active:
            raise UsageError("eval pipelines do not augment; pass augment=None")
        self.data = data
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.augment = augment if augment is not None and augment.active else None
        self.drop_last = train if drop_last is None else drop_last
        self.device = torch.device(device)
        self.num_draws = num_draws
        self.init_order(shard)
        self._pin = self.device.type == "cuda"
        self._mean = torch.tensor(data.mean, dtype=torch.float32, device=self.device)
        self._std = torch.tensor(data.std, dtype=torch.float32, device=self.device)
        self._draw: tuple[int, AugDraw, AugDraw] | None = None

    def draw_params(self, draw: int) -> AugDraw:
        """Augmentation parameters of ``draw`` for all samples (CPU)."""
        return self._cached_draw(draw)[0]

    def _cached_draw(self, draw: int) -> tuple[AugDraw, AugDraw]:
        """The draw on the CPU and on the device, kept for as long as epochs reuse it."""
        if self._draw is None or self._draw[0] != draw:
            params = draw_augment(len(self.data), self.augment or AugmentSpec(), self.seed, draw)
            on_device = AugDraw(params.offsets.to(self.device), params.flips.to(self.device))
            self._draw = (draw, params, on_device)
        return self._draw[1:]

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        if self._pin:
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def batch(self, epoch: int, step: int) -> Batch:
        """Batch ``step`` of epoch ``epoch`` (this rank's slice of it); the same arguments
        always give the same batch."""
        cpu_indices = self.positions(epoch, step)
        raw = self._to_device(self.data.images.index_select(0, cpu_indices))
        labels = self._to_device(self.data.labels.index_select(0, cpu_indices))
        indices = self._to_device(cpu_indices)
        draw = self.draw_for_epoch(epoch)
        if self.augment is not None:
            params = self._cached_draw(draw)[1]
            raw = apply_augment(raw, params.offsets[indices], params.flips[indices],
                                self.augment.crop_pad)
        images = normalize(raw, self._mean, self._std)
        return Batch(images, raw, labels, indices, epoch, step, draw)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """The batches of one epoch from ``start_step`` on (to resume mid-epoch)."""
        for step in range(start_step, len(self)):
            yield self.batch(epoch, step)

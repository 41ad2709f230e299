"""The streaming pipeline: samples read and decoded from disk while training runs.

Same contract as the in-memory ``BatchPipeline`` (``batch(epoch, step)``,
``epoch(epoch, start_step)``, ``len``, the draw of an epoch, the ``Batch`` fields), so
the trainer, the teacher cache, the teacher pool and exact resume use it unchanged:

* the order of epoch ``e`` is the in-memory pipeline's (one permutation per
  (seed, epoch)), and each sample's augmentation is drawn from (seed, draw, index) by
  its recipe (``transforms.py``): the batch of (seed, epoch, step) is a pure function;
* ``epoch`` hands whole batches to ``DataLoader`` worker processes (``workers``), each
  reads, decodes and transforms one batch; at most ``workers x prefetch`` batches
  exist at once, so memory is bounded by the prefetch depth, not the dataset size;
* on a GPU, JPEGs of recipes that take decoded images are decoded there (nvJPEG via
  ``decode_jpeg``): workers only read bytes;
* a file no decoder reads stops the run with an error naming it, or with
  ``on_corrupt="skip"`` is left out of its batch with a warning naming it (always the
  same files, so the batch stays a pure function of the seed, epoch and step).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch

from edgedistill.data.base import AugmentSpec, stratified_order
from edgedistill.data.pipeline import Batch, EpochOrder, normalize
from edgedistill.data.transforms import (
    TRANSFORMS,
    CorruptImage,
    decode_bytes,
    is_jpeg,
    to_uint8_image,
)
from edgedistill.errors import DataMissingError, UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(eq=False)
class StreamingData:
    """One split of a dataset on disk: a reader of encoded samples and their labels.

    Stands where ``ImageData`` stands (``num_classes``, ``mean``, ``std``, ``classes``,
    ``image_shape``, ``labels``, ``subset``, ``split_off``) without holding images;
    ``rows`` maps this split's positions to the reader's samples. ``channels`` 1 keeps
    grey images grey (a user's one-channel ``Dataset``); samples are decoded as RGB, and
    of a grey image's three equal channels the first is kept.
    """

    reader: object
    labels: torch.Tensor
    num_classes: int
    classes: list[str]
    name: str
    image_size: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    split: str = "train"
    augment: AugmentSpec = field(default_factory=lambda: AugmentSpec(crop_pad=8, hflip=True))
    rows: torch.Tensor | None = None
    channels: int = 3

    def __post_init__(self):
        self.labels = torch.as_tensor(self.labels, dtype=torch.int64)
        if self.rows is None:
            self.rows = torch.arange(len(self.labels))
        if len(self.rows) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.rows)} rows but {len(self.labels)} labels")
        if self.channels not in (1, 3):
            raise ValueError(f"{self.name}: channels must be 1 or 3, got {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise UsageError(f"{self.name}: {self.channels}-channel images need one "
                             f"data.mean and data.std value per channel, got {self.mean}, "
                             f"{self.std}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def read(self, position: int):
        return self.reader.read(int(self.rows[position]))

    def where(self, position: int) -> str:
        return self.reader.where(int(self.rows[position]))

    def key(self) -> str:
        """Digest of the files (names, sizes, times) and of which of them this split holds."""
        h = hashlib.sha256(self.reader.key().encode())
        h.update(self.rows.numpy().tobytes())
        h.update(self.labels.numpy().tobytes())
        return h.hexdigest()

    def _take(self, keep: torch.Tensor, **changes) -> StreamingData:
        return replace(self, labels=self.labels[keep], rows=self.rows[keep], **changes)

    def subset(self, n: int, seed: int = 0) -> StreamingData:
        """``n`` samples, class-stratified and fixed by ``seed`` (as ``ImageData.subset``)."""
        if n >= len(self):
            return self
        return self._take(stratified_order(self.labels, seed)[:n].sort().values)

    def split_off(self, n: int, seed: int = 0) -> tuple[StreamingData, StreamingData]:
        """(the rest, ``n`` held-out samples labelled ``val``), as ``ImageData.split_off``."""
        if not 0 < n < len(self):
            raise UsageError(f"{self.name}: val_split must be between 1 and {len(self) - 1} "
                             f"(the training set has {len(self)} images), got {n}")
        order = stratified_order(self.labels, seed)
        return self._take(order[n:].sort().values), self._take(order[:n].sort().values,
                                                                 split="val")


class _Steps(torch.utils.data.Dataset):
    """Batch ``step`` of one epoch as a dataset item, so a worker prepares a whole batch."""

    def __init__(self, pipe: StreamingPipeline, epoch: int):
        self.pipe, self.epoch = pipe, epoch

    def __len__(self) -> int:
        return len(self.pipe)

    def __getitem__(self, step: int) -> dict:
        return self.pipe.prepare(self.pipe.positions(self.epoch, step),
                                 self.pipe.sample_draw(self.epoch))


class _Chunks(torch.utils.data.Dataset):
    """Every sample in dataset order under one draw, in chunks (to build a teacher cache)."""

    def __init__(self, pipe: StreamingPipeline, draw: int | None, size: int):
        self.pipe, self.draw, self.size = pipe, draw, size

    def __len__(self) -> int:
        return -(-len(self.pipe.data) // self.size)

    def __getitem__(self, k: int) -> dict:
        stop = min((k + 1) * self.size, len(self.pipe.data))
        return self.pipe.prepare(torch.arange(k * self.size, stop), self.draw)


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)  # each worker decodes one batch; threads would oversubscribe


class StreamingPipeline(EpochOrder):
    """Batches of a ``StreamingData`` in a seeded order, decoded and transformed by
    ``DataLoader`` workers, normalized on ``device``."""

    streaming = True

    def __init__(self, data: StreamingData, batch_size: int, *, train: bool, seed: int = 0,
                 augment: AugmentSpec | None = None, augment_enabled: bool = True,
                 drop_last: bool | None = None, device: str | torch.device = "cpu",
                 num_draws: int | None = None, workers: int = 2, prefetch: int = 2,
                 on_corrupt: str = "error", transform: str = "imagenet",
                 transform_options: dict | None = None, shard: tuple[int, int] | None = None,
                 log=print):
        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        if seed < 0 or workers < 0 or prefetch < 1:
            raise UsageError(f"need seed >= 0, workers >= 0, prefetch >= 1; got {seed}, "
                             f"{workers}, {prefetch}")
        if on_corrupt not in ("skip", "error"):
            raise UsageError(f"on_corrupt must be skip or error, got {on_corrupt!r}")
        self.data = data
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.drop_last = train if drop_last is None else drop_last
        self.device = torch.device(device)
        self.num_draws = num_draws
        self.workers, self.prefetch, self.on_corrupt = workers, prefetch, on_corrupt
        self.log = log
        self.transform = transform
        self.transform_options = dict(transform_options or {})
        settings = TRANSFORMS.validate_settings(transform, self.transform_options,
                                                "data.transform_options")
        self.recipe = TRANSFORMS.get(transform)(size=data.image_size, seed=seed,
                                                num_samples=len(data), augment=augment,
                                                **settings.model_dump())
        # what the cache and the pool read: None when no sample is ever augmented
        augments = train and augment_enabled and (transform != "fit" or (
            augment is not None and augment.active))
        self.augment = self.recipe if augments else None
        self.decode_device = self.device if (self.device.type == "cuda"
                                             and not self.recipe.decodes_bytes) else None
        self._pin = self.device.type == "cuda"
        self._warned: set[str] = set()
        self.init_order(shard)

    def sample_draw(self, epoch: int) -> int | None:
        """The draw samples are transformed with; None: the evaluation transform."""
        return None if self.augment is None else self.draw_for_epoch(epoch)

    def content_key(self) -> str:
        """Everything that fixes the images of every (sample, draw): for the teacher cache."""
        return "|".join([self.data.key(), self.transform, repr(sorted(
            self.transform_options.items())), str(self.data.image_size), str(self.seed),
            repr(self.augment is not None), repr(getattr(self.recipe, "augment", None)),
            str(self.decode_device), repr(self.data.mean), repr(self.data.std)])

    # ---- what a worker does: read, decode, transform ----
    def prepare(self, positions: torch.Tensor, draw: int | None) -> dict:
        """Read (and, unless a GPU decodes, decode and transform) the samples at
        ``positions``. Corrupt files are reported, never raised, so that a worker's
        error reaches the user as one line rather than a worker traceback."""
        images, kept, skipped = [], [], []
        for p in positions.tolist():
            try:
                item = self.data.read(p)
                images.append(self._finish(item, p, draw) if self.decode_device is None
                              else self._readable(item, p))
            except CorruptImage as err:
                if (stop := self._corrupt(err, skipped)) is not None:
                    return stop
                continue
            kept.append(p)
        if self.decode_device is None and images:
            out = None
            if torch.utils.data.get_worker_info() is not None:  # as default_collate does:
                # stacked straight into shared memory, no copy on the way to the main
                # process, and no 10 MB private buffers for the worker's heap to fragment
                out = torch.empty((len(images), *images[0].shape), dtype=images[0].dtype)
                out.share_memory_()
            images = torch.stack(images, out=out)
        return {"images": images, "positions": torch.tensor(kept, dtype=torch.int64),
                "skipped": skipped, "error": None}

    def _corrupt(self, err: CorruptImage, skipped: list[str]) -> dict | None:
        """``data.on_corrupt``: the run's error (``error``), or None and the file noted."""
        if self.on_corrupt == "error":
            return {"error": f"{err}; remove or replace the file, or set "
                             "data.on_corrupt: skip to leave such files out"}
        skipped.append(err.where)
        return None

    def _readable(self, item, p: int):
        """A JPEG stays encoded (a GPU decodes it); anything else is decoded here."""
        return item if is_jpeg(item) else to_uint8_image(item, self.data.where(p))

    def _finish(self, item, p: int, draw: int | None, device=None) -> torch.Tensor:
        where = self.data.where(p)
        if self.recipe.decodes_bytes:
            img = self.recipe.fit(item, where)
        elif device is not None and is_jpeg(item):
            img = decode_bytes(item, where, device)
        else:
            img = to_uint8_image(item, where)
        img = self.recipe.eval(img) if draw is None else self.recipe.train(img, p, draw)
        return img[:1] if self.data.channels == 1 else img

    # ---- the main process: finish, move, normalize ----
    def _finish_on_device(self, prepared: dict, draw: int | None) -> dict:
        images, kept, skipped = [], [], list(prepared["skipped"])
        for item, p in zip(prepared["images"], prepared["positions"].tolist(), strict=True):
            try:
                images.append(self._finish(item, p, draw, self.decode_device))
            except CorruptImage as err:
                if (stop := self._corrupt(err, skipped)) is not None:
                    return stop
                continue
            kept.append(p)
        return {"images": torch.stack(images) if images else [],
                "positions": torch.tensor(kept, dtype=torch.int64), "skipped": skipped,
                "error": None}

    def _checked(self, prepared: dict, draw: int | None, what: str) -> dict:
        if prepared["error"] is None and self.decode_device is not None:
            prepared = self._finish_on_device(prepared, draw)
        if prepared["error"] is not None:
            raise DataMissingError(prepared["error"])
        for where in prepared["skipped"]:
            if where not in self._warned:
                self._warned.add(where)
                self.log(f"warning: skipping {where}: no decoder can read it "
                         "(data.on_corrupt: skip)")
        if not len(prepared["positions"]):
            raise DataMissingError(f"every image of {what} is corrupt; see the warnings above")
        return prepared

    def raw(self, positions: torch.Tensor, draw: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images as the student sees them, the positions kept), in this process."""
        prepared = self._checked(self.prepare(positions, draw), draw, "these samples")
        return prepared["images"], prepared["positions"]

    def _batch(self, prepared: dict, epoch: int, step: int) -> Batch:
        draw = self.sample_draw(epoch)
        prepared = self._checked(prepared, draw, f"batch ({epoch}, {step})")
        cpu_positions = prepared["positions"]
        raw = prepared["images"].to(self.device, non_blocking=True)
        labels = self.data.labels.index_select(0, cpu_positions).to(self.device,
                                                                    non_blocking=True)
        images = normalize(raw, self.data.mean, self.data.std)
        return Batch(images, raw, labels, cpu_positions.to(self.device), epoch, step,
                     self.draw_for_epoch(epoch))

    def batch(self, epoch: int, step: int) -> Batch:
        """Batch ``step`` of epoch ``epoch``, prepared in this process."""
        return self._batch(self.prepare(self.positions(epoch, step), self.sample_draw(epoch)),
                           epoch, step)

    def _loader(self, dataset, steps) -> Iterator[dict]:
        if self.workers == 0:
            return (dataset[s] for s in steps)
        return iter(torch.utils.data.DataLoader(
            dataset, batch_size=None, sampler=steps, num_workers=self.workers,
            prefetch_factor=self.prefetch, pin_memory=self._pin,
            worker_init_fn=_one_thread))

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """The batches of one epoch from ``start_step`` on, prepared by the workers."""
        steps = range(start_step, len(self))
        for step, prepared in zip(steps, self._loader(_Steps(self, epoch), steps), strict=True):
            yield self._batch(prepared, epoch, step)

    def dataset_batches(self, draw: int, batch_size: int
                        ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(positions, uint8 images) of every sample in dataset order under ``draw``,
        read by the workers: what a teacher cache is built from."""
        draw_arg = draw if self.augment is not None else None
        chunks = _Chunks(self, draw_arg, batch_size)
        for k, prepared in enumerate(self._loader(chunks, range(len(chunks)))):
            prepared = self._checked(prepared, draw_arg, f"samples from {k * batch_size}")
            yield prepared["positions"], prepared["images"]


def dataset_batches(pipe, draw: int, batch_size: int
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(CPU indices, uint8 images) of every sample of ``pipe``'s data in dataset order,
    augmented as draw ``draw`` augments them, from either pipeline: what a teacher cache
    is built from (streamed by the workers, or sliced from memory)."""
    from edgedistill.data.pipeline import apply_augment

    if getattr(pipe, "streaming", False):
        yield from pipe.dataset_batches(draw, batch_size)
        return
    data, n = pipe.data, len(pipe.data)
    params = pipe.draw_params(draw) if pipe.augment else None
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(start + batch_size, n))
        raw = data.images[idx]
        if params is not None:
            raw = apply_augment(raw, params.offsets[idx], params.flips[idx],
                                pipe.augment.crop_pad)
        yield idx, raw

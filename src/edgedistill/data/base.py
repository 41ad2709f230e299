"""Datasets as tensors in memory, and the one entry point that loads them by name.

Every dataset used here fits in memory as uint8, so loaders decode once into an
``ImageData`` and the training loop never touches files, PIL or worker processes:
batching and augmentation are whole-tensor ops (see ``pipeline.py``).
"""

from __future__ import annotations

import gzip
import inspect
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from edgedistill.errors import DataMissingError, UsageError
from edgedistill.registry import Registry

DATASETS = Registry("dataset")


@dataclass(frozen=True)
class AugmentSpec:
    """Random crop after zero padding by ``crop_pad`` pixels, and optional horizontal flip.

    Each dataset declares its default: a flip makes sense for clothes and objects but
    turns digits into other glyphs, so digit sets leave it off.
    """

    crop_pad: int = 0
    hflip: bool = False

    def __post_init__(self):
        if self.crop_pad < 0:
            raise UsageError(f"augment.crop_pad must be >= 0, got {self.crop_pad}")

    @property
    def active(self) -> bool:
        return self.crop_pad > 0 or self.hflip


@dataclass(eq=False)
class ImageData:
    """One split of a dataset: uint8 images [N,C,H,W] and int64 labels [N].

    ``mean`` and ``std`` are per channel on the 0-1 scale and always come from the
    train split, so train and test are normalized alike. ``augment`` is the dataset's
    default training augmentation.
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str]
    name: str
    split: str = "train"
    augment: AugmentSpec = field(default_factory=AugmentSpec)

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"{self.name}: images must be uint8 [N,C,H,W], got "
                             f"{self.images.dtype} {tuple(self.images.shape)}")
        self.images = self.images.contiguous()
        self.labels = self.labels.to(torch.int64).contiguous()
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"{self.name}: {self.images.shape[0]} images but labels "
                             f"{tuple(self.labels.shape)}")
        if len(self.mean) != self.images.shape[1] or len(self.std) != self.images.shape[1]:
            raise ValueError(f"{self.name}: mean/std need one value per channel")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W): what a model built for this dataset takes."""
        return tuple(self.images.shape[1:])

    def subset(self, n: int, seed: int = 0) -> ImageData:
        """``n`` samples, class-stratified and fixed by ``seed``, kept in dataset order.

        Stratified so that a small subset still has every class in proportion;
        deterministic so that a limited run is reproducible.
        """
        if n >= len(self):
            return self
        keep = stratified_order(self.labels, seed)[:n].sort().values
        return replace(self, images=self.images[keep], labels=self.labels[keep])


    def split_off(self, n: int, seed: int = 0) -> tuple[ImageData, ImageData]:
        """(the rest, ``n`` held-out samples): a class-stratified split fixed by ``seed``,
        both kept in dataset order. The held-out part is labelled ``val``."""
        if not 0 < n < len(self):
            raise UsageError(f"{self.name}: val_split must be between 1 and {len(self) - 1} "
                             f"(the training set has {len(self)} images), got {n}")
        order = stratified_order(self.labels, seed)
        held, rest = order[:n].sort().values, order[n:].sort().values
        return (replace(self, images=self.images[rest], labels=self.labels[rest]),
                replace(self, images=self.images[held], labels=self.labels[held], split="val"))


def stratified_order(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded permutation of indices whose every prefix holds the classes in proportion.

    Shuffle, number each sample within its class, and sort stably by that number
    divided by the class size: the first ``n`` then take the same fraction of each class.
    """
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(labels), generator=gen)
    shuffled = labels[perm]
    by_class = torch.sort(shuffled, stable=True).indices
    counts = torch.bincount(shuffled)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(by_class)
    rank[by_class] = torch.arange(len(labels)) - starts[shuffled[by_class]]
    key = (rank.double() + 0.5) / counts[shuffled].double()
    return perm[torch.sort(key, stable=True).indices]


def stratified_split(labels: torch.Tensor, n_test: int, seed: int):
    """(train indices, test indices) for datasets shipped without a test split."""
    if not 0 < n_test < len(labels):
        raise UsageError(f"num_test must be between 1 and {len(labels) - 1}, got {n_test}")
    order = stratified_order(labels, seed)
    return order[n_test:].sort().values, order[:n_test].sort().values


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std on the 0-1 scale, from a histogram of byte values.

    A 256-bin histogram per channel, built chunk by chunk, keeps memory flat even for
    CIFAR-sized sets, where a float copy would need gigabytes.
    """
    channels = images.shape[1]
    hist = torch.zeros(channels, 256, dtype=torch.float64)
    for chunk in images.split(4096):
        for c in range(channels):
            hist[c] += torch.bincount(chunk[:, c].reshape(-1), minlength=256)
    values = torch.arange(256, dtype=torch.float64) / 255
    total = hist.sum(1).clamp_min(1)
    mean = (hist * values).sum(1) / total
    var = (hist * values**2).sum(1) / total - mean**2
    std = var.clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def make_splits(name: str, classes: list[str], train: tuple, test: tuple,
                augment: AugmentSpec) -> tuple[ImageData, ImageData]:
    """Wrap (images, labels) pairs of uint8 numpy/torch arrays into train and test ImageData."""
    train_x, train_y = (torch.as_tensor(a) for a in train)
    test_x, test_y = (torch.as_tensor(a) for a in test)
    mean, std = channel_stats(train_x)
    common = dict(num_classes=len(classes), mean=mean, std=std, classes=list(classes),
                  name=name, augment=augment)
    return (ImageData(train_x, train_y, split="train", **common),
            ImageData(test_x, test_y, split="test", **common))


def load_dataset(name: str, root: str | Path | None = None, limit_train: int | None = None,
                 limit_test: int | None = None, seed: int = 0,
                 **kw) -> tuple[ImageData, ImageData]:
    """Load a registered dataset by name as (train, test); see ``load_splits``."""
    train, _, test = load_splits(name, root, limit_train, limit_test, seed, **kw)
    return train, test


def load_splits(name: str, root: str | Path | None = None, limit_train: int | None = None,
                limit_test: int | None = None, seed: int = 0, val_split: int | None = None,
                **kw) -> tuple[ImageData, ImageData | None, ImageData]:
    """Load a registered dataset by name as (train, validation or None, test).

    ``val_split`` images are held out of the training set first, always with seed 0, so
    that runs of any seed validate on the same images and never train on them.
    ``limit_train`` then draws a stratified subset of the rest with ``seed``;
    ``limit_test`` always uses seed 0, so runs that differ only in seed are scored on the
    same test images. Extra keywords go to the dataset's loader (e.g. ``image_size`` for
    imagefolder).
    """
    loader = DATASETS.get(name)
    kw = check_options(name, loader, kw)
    for what, limit in (("limit_train", limit_train), ("limit_test", limit_test),
                        ("val_split", val_split)):
        if limit is not None and limit < 1:
            raise UsageError(f"{what} must be >= 1, got {limit}")
    try:
        train, test = loader(root=root, seed=seed, **kw)
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:  # click: only "Aborted."
        raise DataMissingError(f"dataset {name!r}: a file under {root or 'its folder'} is "
                               f"truncated or damaged ({type(err).__name__}: {err}); fetch "
                               "it again") from None
    val = None
    if val_split is not None:
        train, val = train.split_off(val_split, 0)
    if limit_train is not None:
        train = train.subset(limit_train, seed)
    if limit_test is not None:
        test = test.subset(limit_test, 0)
    return train, val, test


def check_options(name: str, loader, options: dict) -> dict:
    """``data.options`` checked against the loader's keyword parameters: unknown names and
    values of the wrong type (or inf/nan) are a ``UsageError`` naming the key, before any
    file is read. Values come back converted (``"5"`` -> 5 for an ``int`` option)."""
    from pydantic import ConfigDict, TypeAdapter, ValidationError

    params = inspect.signature(loader, eval_str=True).parameters
    allowed = sorted(p for p in params if p not in ("root", "seed"))
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UsageError(f"dataset {name!r} has no option {', '.join(unknown)}; "
                         f"its options are: {', '.join(allowed) or '(none)'}")
    checked = {}
    for key, value in options.items():
        kind = params[key].annotation
        if kind is inspect.Parameter.empty:
            checked[key] = value
            continue
        try:
            adapter = TypeAdapter(kind, config=ConfigDict(allow_inf_nan=False))
            checked[key] = adapter.validate_python(value)
        except ValidationError as err:
            raise UsageError(f"data.options.{key}: {err.errors()[0]['msg'].lower()} "
                             f"(got {value!r}); dataset {name!r} takes "
                             f"{getattr(kind, '__name__', kind)} here") from None
    return checked


def as_uint8(x: np.ndarray, scale: float) -> np.ndarray:
    """Scale float pixel values with maximum ``scale`` to 0-255 bytes, rounding."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) * (255.0 / scale)), 0, 255).astype(
        np.uint8)

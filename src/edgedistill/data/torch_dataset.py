"""A user's map-style ``torch.utils.data.Dataset``: read into an in-memory ``ImageData``,
or streamed (``StreamingData``) when ``data.streaming`` says so or it would not fit.

Items are ``(image, label)``; images uint8 (0-255) or float in [0, 1] (what
``transforms.ToTensor`` gives), shape (C, H, W) or (H, W), or PIL images, all of one
size. In memory they are
stored as uint8, like every in-memory set, and normalized later with the training
split's per-channel statistics, so a ``transforms.Normalize`` must not be applied
first. A set larger than ``limit`` bytes is refused there (it belongs on the streaming
path, which ``wants_streaming`` picks by itself when ``data.streaming`` is unset).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from edgedistill.data.base import AugmentSpec, ImageData, channel_stats
from edgedistill.errors import UsageError

_TOLERANCE = 1e-3  # float images a hair outside [0, 1] from resampling are clamped


def _image(value: Any, index: int) -> torch.Tensor:
    if hasattr(value, "getbands"):  # a PIL image (a torchvision dataset without ToTensor)
        array = np.asarray(value)
        x = torch.from_numpy(array.copy()).permute(2, 0, 1) if array.ndim == 3 else \
            torch.from_numpy(array.copy())
    else:
        x = torch.as_tensor(value.numpy() if hasattr(value, "numpy") and not
                            isinstance(value, torch.Tensor) else value)
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3:
        raise UsageError(f"dataset item {index}: the image has shape {tuple(x.shape)}; give "
                         "(C, H, W) or (H, W) tensors")
    if x.dtype == torch.uint8:
        return x
    if x.is_floating_point():
        lo, hi = float(x.min()), float(x.max())
        if lo < -_TOLERANCE or hi > 1 + _TOLERANCE:
            raise UsageError(f"dataset item {index}: float pixels range {lo:.3g}..{hi:.3g}, "
                             "not [0, 1]; give uint8 or [0, 1] floats (edgedistill normalizes "
                             "itself: drop transforms.Normalize)")
        return (x.clamp(0, 1) * 255).round().to(torch.uint8)
    if int(x.min()) < 0 or int(x.max()) > 255:
        raise UsageError(f"dataset item {index}: integer pixels outside 0..255")
    return x.to(torch.uint8)


def _label(value: Any, index: int) -> int:
    try:
        label = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"dataset item {index}: the label {value!r} is not an integer class "
                         "index") from None
    if label < 0:
        raise UsageError(f"dataset item {index}: negative label {label}")
    return label


def _item(dataset, index: int):
    item = dataset[index]
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise UsageError(f"dataset item {index} is a {type(item).__name__}, not an (image, "
                         "label) pair")
    return _image(item[0], index), _label(item[1], index)


def _length(dataset) -> int:
    try:
        n = len(dataset)
    except TypeError:
        raise UsageError(f"{type(dataset).__name__} has no len(); give a map-style Dataset "
                         "(an IterableDataset has no random access)") from None
    if n == 0:
        raise UsageError(f"{type(dataset).__name__} is empty")
    return n


def _read(dataset, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = _length(dataset)
    first, _ = _item(dataset, 0)
    need = n * first.numel()
    if need > limit:
        raise UsageError(f"{type(dataset).__name__}: {n} images of {tuple(first.shape)} need "
                         f"{need / 2**30:.1f} GiB as uint8, above the in-memory limit of "
                         f"{limit / 2**30:.1f} GiB (data.memory_budget_gb); use a smaller set, "
                         "raise the budget, or stream it (data.streaming: true)")
    tensors = getattr(dataset, "tensors", None)  # TensorDataset: one conversion for all
    if isinstance(dataset, torch.utils.data.TensorDataset) and len(tensors) == 2:
        images = torch.stack([_image(x, i) for i, x in enumerate(tensors[0].unbind(0))]) \
            if tensors[0].dtype != torch.uint8 else tensors[0]
        if images.dim() == 3:
            images = images.unsqueeze(1)
        return _image_check(images), torch.as_tensor(tensors[1]).long()
    images = torch.empty((n, *first.shape), dtype=torch.uint8)
    labels = torch.empty(n, dtype=torch.long)
    for i in range(n):
        x, y = _item(dataset, i)
        if x.shape != first.shape:
            raise UsageError(f"dataset item {i}: image shape {tuple(x.shape)} differs from "
                             f"item 0's {tuple(first.shape)}; resize them to one size")
        images[i], labels[i] = x, y
    return images, labels


def _image_check(images: torch.Tensor) -> torch.Tensor:
    if images.dim() != 4:
        raise UsageError(f"TensorDataset images have shape {tuple(images.shape)}; give "
                         "[N, C, H, W] or [N, H, W]")
    return images


def from_dataset(dataset, split: str, *, like: ImageData | None = None,
                 stats: dict | None = None, limit: int) -> ImageData:
    """``dataset`` as ``ImageData``. ``like`` (the training split) supplies the classes
    and normalization of a test split; ``stats`` (``{"mean", "std"}``) the normalization
    alone; otherwise they come from ``dataset`` itself."""
    if isinstance(dataset, ImageData):
        return dataset
    images, labels = _read(dataset, limit)
    classes = list(getattr(dataset, "classes", None) or [])
    num = max(int(labels.max()) + 1, len(classes), like.num_classes if like else 0)
    if like is not None:
        if images.shape[1:] != like.images.shape[1:]:
            raise UsageError(f"test images are {tuple(images.shape[1:])}, train images "
                             f"{tuple(like.images.shape[1:])}; give both at one size")
        if num > like.num_classes:
            raise UsageError(f"the test set has label {num - 1}, the train set only "
                             f"{like.num_classes} classes")
        mean, std, classes = like.mean, like.std, like.classes
    elif stats is not None:
        mean, std = tuple(stats["mean"]), tuple(stats["std"])
    else:
        mean, std = channel_stats(images)
    if len(classes) < num:
        classes = [str(i) for i in range(num)]
    return ImageData(images, labels, num_classes=len(classes), mean=mean, std=std,
                     classes=classes, name=type(dataset).__name__, split=split,
                     augment=AugmentSpec())


def decoded_bytes(dataset) -> int:
    """What the in-memory path would hold for ``dataset``: its length x its first image."""
    if isinstance(dataset, ImageData):
        return dataset.images.numel()
    return _length(dataset) * _item(dataset, 0)[0].numel()


def wants_streaming(cfg, datasets, log=print) -> bool:
    """Whether a user's ``datasets`` (train, test or None) stream under ``cfg`` (a
    ``DataConfig``): ``data.streaming`` when set, else when their decoded size exceeds
    ``data.memory_budget_gb`` or ``data.options.image_size`` asks for a resize (and then
    says so). Sets already in memory stay there."""
    datasets = [d for d in datasets if d is not None]
    if any(isinstance(d, ImageData) for d in datasets):
        if cfg.streaming:
            raise UsageError("data.streaming: true, but the data given is an ImageData, "
                             "already in memory; give a torch Dataset to stream")
        return False
    if cfg.streaming is not None:
        return cfg.streaming
    if "image_size" in cfg.options:
        log(f"data: data.options.image_size={cfg.options['image_size']} resizes "
            f"{type(datasets[0]).__name__}'s images, which only streaming does: streaming it "
            f"with {cfg.workers} workers")
        return True
    need = sum(decoded_bytes(d) for d in datasets)
    if need <= cfg.memory_budget_gb * 2**30:
        return False
    log(f"data: {type(datasets[0]).__name__} would take {need / 2**30:.3g} GiB decoded in "
        f"memory, over data.memory_budget_gb={cfg.memory_budget_gb:g}: streaming it with "
        f"{cfg.workers} workers instead")
    return True


def _channels(image: Any) -> int:
    """1 for a grey image, 3 otherwise (encoded bytes and colour images decode as RGB)."""
    if hasattr(image, "getbands"):
        return 1 if len(image.getbands()) == 1 else 3
    x = image if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
    if x.dim() == 2:
        return 1
    if x.dim() == 3 and (x.shape[0] == 1 or (x.shape[0] != 3 and x.shape[-1] == 1)):
        return 1
    return 3


def stream_dataset(dataset, split: str, cfg, *, like=None):
    """``dataset`` as ``StreamingData`` under ``cfg`` (a ``DataConfig``). Images come
    out square, ``data.options.image_size`` on a side, else as large as the first image's
    shorter side; grey images stay one channel. ``like`` (the training split) supplies the
    size, classes and normalization of a test split. No default augmentation, as in
    memory: ``data.augment`` turns on the pad-crop and flip (the ``imagenet`` recipe's
    random resized crop applies regardless)."""
    from edgedistill.data.stream_sources import streaming_data
    from edgedistill.data.transforms import CorruptImage, to_uint8_image

    name = type(dataset).__name__
    if like is not None:
        data = streaming_data(dataset, like.image_size, num_classes=like.num_classes,
                              classes=like.classes, name=name, split=split, mean=like.mean,
                              std=like.std, channels=like.channels, augment=like.augment)
        if int(data.labels.max()) >= like.num_classes or int(data.labels.min()) < 0:
            raise UsageError(f"the test set has label {int(data.labels.max())}, the train "
                             f"set only {like.num_classes} classes")
        return data
    _length(dataset)
    item = dataset[0]
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise UsageError(f"dataset item 0 is a {type(item).__name__}, not an (image, label) "
                         "pair")
    first = item[0]
    size = cfg.options.get("image_size")
    if size is None:
        try:
            size = min(to_uint8_image(first, f"{name}[0]").shape[1:])
        except CorruptImage as err:
            raise UsageError(str(err)) from None
    mean, std = (None, None) if cfg.mean is None else (cfg.mean, cfg.std)
    return streaming_data(dataset, size, name=name, split=split, mean=mean, std=std,
                          channels=_channels(first), augment=AugmentSpec())

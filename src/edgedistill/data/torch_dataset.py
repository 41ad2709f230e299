"""A user's map-style ``torch.utils.data.Dataset`` read into an in-memory ``ImageData``.

Items are ``(image, label)``; images uint8 (0-255) or float in [0, 1] (what
``transforms.ToTensor`` gives), shape (C, H, W) or (H, W), or PIL images, all of one
size. They are
stored as uint8, like every in-memory set, and normalized later with the training
split's per-channel statistics, so a ``transforms.Normalize`` must not be applied
first. A set larger than ``limit`` bytes is refused (it belongs on a streaming path).
"""

from __future__ import annotations

from typing import Any

import torch

from edgedistill.data.base import AugmentSpec, ImageData, channel_stats
from edgedistill.errors import UsageError

_TOLERANCE = 1e-3  # float images a hair outside [0, 1] from resampling are clamped


def _image(value: Any, index: int) -> torch.Tensor:
    if hasattr(value, "getbands"):  # a PIL image (a torchvision dataset without ToTensor)
        import numpy as np

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


def _read(dataset, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        n = len(dataset)
    except TypeError:
        raise UsageError(f"{type(dataset).__name__} has no len(); give a map-style Dataset "
                         "(an IterableDataset cannot be read into memory here)") from None
    if n == 0:
        raise UsageError(f"{type(dataset).__name__} is empty")
    first, _ = _item(dataset, 0)
    need = n * first.numel()
    if need > limit:
        raise UsageError(f"{type(dataset).__name__}: {n} images of {tuple(first.shape)} need "
                         f"{need / 2**30:.1f} GiB as uint8, above the in-memory limit of "
                         f"{limit / 2**30:.1f} GiB (data.memory_budget_gb); use a smaller set, "
                         "raise the budget, or stream it from disk (an imagefolder dataset)")
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

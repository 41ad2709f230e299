"""Seeded random images that a small network can still learn, for tests and smoke runs.

Each class has a smooth prototype (a random 4x4 field per channel, upsampled); a
sample is its class prototype mixed with pixel noise. The prototypes differ in
colour and coarse layout, so a teacher reaches high accuracy in a few epochs and
distillation has something real to transfer, without any files.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgedistill.data.base import DATASETS, AugmentSpec, make_splits
from edgedistill.errors import UsageError


@DATASETS.register("synthetic")
def load_synthetic(root=None, seed=0, num_train: int = 512, num_test: int = 128,
                   num_classes: int = 10, channels: int = 3, image_size: int = 16,
                   noise: float = 0.5, data_seed: int = 0):
    """Random class prototypes plus noise; sizes, channels and classes configurable."""
    for key, value in (("num_train", num_train), ("num_test", num_test),
                       ("num_classes", num_classes), ("channels", channels),
                       ("image_size", image_size)):
        if value < 1:
            raise UsageError(f"synthetic {key} must be >= 1, got {value}")
    if not 0.0 <= noise <= 1.0:
        raise UsageError(f"synthetic noise must be in [0, 1], got {noise}")
    gen = torch.Generator().manual_seed(data_seed)
    coarse = torch.rand(num_classes, channels, 4, 4, generator=gen)
    prototypes = F.interpolate(coarse, size=(image_size, image_size), mode="bilinear",
                               align_corners=False)

    def sample(n: int):
        labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]
        pixels = torch.rand(n, channels, image_size, image_size, generator=gen)
        mixed = (1 - noise) * prototypes[labels] + noise * pixels
        return (mixed * 255).round().clamp(0, 255).to(torch.uint8), labels

    train = sample(num_train)
    return make_splits("synthetic", [f"class_{i}" for i in range(num_classes)], train,
                       sample(num_test), AugmentSpec(crop_pad=max(1, image_size // 8), hflip=True))

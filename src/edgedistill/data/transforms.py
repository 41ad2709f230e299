"""Decoding and per-sample transforms of the streaming pipeline, one registered recipe each.

A recipe turns one encoded sample into the uint8 [3, size, size] image the student
sees. Its random parameters come from a generator seeded by (seed, draw, index) alone,
so any process (a DataLoader worker, the cache builder, the pool's planner) rebuilds the
same image for the same sample and draw, and the batch for (seed, epoch, step) stays a
pure function of the three.

* ``imagenet``: the standard recipe (RandomResizedCrop to ``size`` with scale
  (0.08, 1) and ratio (3/4, 4/3), then a horizontal flip for training; resize the
  shorter side to ``size / 0.875`` and centre crop for evaluation), as in torchvision's
  reference scripts and torchdistill's ImageNet configs.
* ``fit``: what the in-memory ``imagefolder`` loader does (each image fitted to a
  ``size`` square once with PIL) and the in-memory augmentation (zero-pad crop and flip,
  drawn for all samples per draw by ``pipeline.draw_augment``): streamed batches are
  then bit-identical to the in-memory path's.

JPEGs are decoded with ``torchvision.io.decode_jpeg`` (libjpeg-turbo; nvJPEG when the
pipeline decodes on a GPU), anything else, and JPEGs it refuses, with PIL.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_jpeg  # here, so forked workers inherit it

from edgedistill.data.base import AugmentSpec
from edgedistill.registry import Registry

TRANSFORMS = Registry("transform", skip=("size", "seed", "num_samples", "augment"))
SAMPLE_STREAM = 2
JPEG_MAGIC = b"\xff\xd8"


class CorruptImage(Exception):
    """A sample that no decoder can read; ``where`` names its file."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"cannot decode {where}: {reason}")
        self.where = where


def is_jpeg(item) -> bool:
    return isinstance(item, torch.Tensor) and item.dim() == 1 and item.numel() > 2 \
        and bytes(item[:2].tolist()) == JPEG_MAGIC


def as_bytes_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def decode_pil(data: bytes, where: str):
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        return img.convert("RGB")
    except (OSError, ValueError, SyntaxError) as err:
        raise CorruptImage(where, str(err)) from None


def pil_to_tensor(img) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


def to_uint8_image(item, where: str) -> torch.Tensor:
    """uint8 [3, H, W] from what a reader hands over: encoded bytes (1-D uint8 tensor),
    a PIL image, a uint8 [C,H,W] / [H,W,C] array, or a float [C,H,W] on the 0-1 scale."""
    from PIL import Image

    if isinstance(item, Image.Image):
        return pil_to_tensor(item)
    if isinstance(item, np.ndarray):
        item = torch.from_numpy(item)
    if not isinstance(item, torch.Tensor):
        raise CorruptImage(where, f"a sample must be bytes, a PIL image or a tensor, "
                                  f"got {type(item).__name__}")
    if item.dim() == 1 and item.dtype == torch.uint8:
        return decode_bytes(item, where)
    if item.dim() == 2:
        item = item[None]
    if item.dim() == 3 and item.shape[0] not in (1, 3) and item.shape[-1] in (1, 3):
        item = item.permute(2, 0, 1)
    if item.is_floating_point():
        item = (item.clamp(0, 1) * 255).round().to(torch.uint8)
    if item.dim() != 3 or item.shape[0] not in (1, 3) or item.dtype != torch.uint8:
        raise CorruptImage(where, f"expected an image [C,H,W], got {item.dtype} "
                                  f"{tuple(item.shape)}")
    return item.expand(3, -1, -1).contiguous() if item.shape[0] == 1 else item


def decode_bytes(data: torch.Tensor, where: str, device: str | torch.device = "cpu"
                 ) -> torch.Tensor:
    """One encoded image as uint8 [3, H, W] on ``device``: decode_jpeg, else PIL."""
    if is_jpeg(data):
        try:
            return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            pass  # PIL reads some JPEGs libjpeg-turbo refuses (CMYK, odd markers)
    return pil_to_tensor(decode_pil(data.numpy().tobytes(), where)).to(device)


def sample_rng(seed: int, draw: int, index: int) -> np.random.Generator:
    """The generator of one sample's augmentation, independent of every other sample."""
    return np.random.default_rng([SAMPLE_STREAM, seed, draw, index])


def resized_crop_params(rng: np.random.Generator, h: int, w: int, scale, ratio
                        ) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a RandomResizedCrop, torchvision's algorithm
    (ten tries at a random area and aspect ratio, then the centre crop of the clamped
    ratio) with our seeded generator instead of the global one."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    in_ratio = w / h
    if in_ratio < min(ratio):
        cw, ch = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        ch, cw = h, int(round(h * max(ratio)))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def resize(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [3, H, W] resized bilinearly with antialiasing (torchvision's Resize); in
    uint8 on the CPU, through float on other devices."""
    x = img[None] if img.device.type == "cpu" else img[None].float()
    out = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return out[0] if out.dtype == torch.uint8 else out[0].round_().clamp_(0, 255).byte()


def resize_shorter(img: torch.Tensor, short: int) -> torch.Tensor:
    h, w = img.shape[1:]
    size = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
    return resize(img, size)


def centre_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    h, w = img.shape[1:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return img[:, top:top + size, left:left + size]


@TRANSFORMS.register("imagenet")
class ImageNetRecipe:
    """RandomResizedCrop + flip for training; resize to size/0.875 + centre crop for eval."""

    decodes_bytes = False  # takes decoded images, so decoding may happen on a GPU

    def __init__(self, size: int, seed: int, num_samples: int, augment: AugmentSpec | None,
                 scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 eval_crop_ratio: float = 0.875):
        if not (0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1]
                and 0 < eval_crop_ratio <= 1):
            raise ValueError(f"imagenet transform: need 0 < scale <= 1, 0 < ratio and "
                             f"0 < eval_crop_ratio <= 1, got {scale}, {ratio}, {eval_crop_ratio}")
        self.size, self.seed = size, seed
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.hflip = augment is None or augment.hflip
        self.eval_resize = int(round(size / eval_crop_ratio))

    def train(self, img: torch.Tensor, index: int, draw: int) -> torch.Tensor:
        rng = sample_rng(self.seed, draw, index)
        top, left, h, w = resized_crop_params(rng, img.shape[1], img.shape[2], self.scale,
                                              self.ratio)
        out = resize(img[:, top:top + h, left:left + w], (self.size, self.size))
        return out.flip(2) if self.hflip and rng.random() < 0.5 else out

    def eval(self, img: torch.Tensor) -> torch.Tensor:
        return centre_crop(resize_shorter(img, self.eval_resize), self.size)


@TRANSFORMS.register("fit")
class FitRecipe:
    """Fit to a size square with PIL (the in-memory imagefolder), pad-crop + flip draws."""

    decodes_bytes = True  # PIL's draft mode and ImageOps.fit, as the in-memory loader

    def __init__(self, size: int, seed: int, num_samples: int, augment: AugmentSpec | None):
        self.size, self.seed, self.num_samples = size, seed, num_samples
        self.augment = augment if augment is not None and augment.active else None
        self._draw: tuple[int, object] | None = None

    def fit(self, item, where: str) -> torch.Tensor:
        from PIL import Image, ImageOps

        if isinstance(item, torch.Tensor) and item.dim() == 1:
            try:  # draft before decoding, exactly as data/imagefolder.py does
                img = Image.open(io.BytesIO(item.numpy().tobytes()))
                img.draft("RGB", (self.size, self.size))
                img = img.convert("RGB")
            except (OSError, ValueError, SyntaxError) as err:
                raise CorruptImage(where, str(err)) from None
        elif isinstance(item, Image.Image):
            img = item.convert("RGB")
        else:
            img = Image.fromarray(to_uint8_image(item, where).permute(1, 2, 0).numpy())
        img = ImageOps.fit(img, (self.size, self.size), Image.Resampling.BICUBIC)
        return pil_to_tensor(img)

    def train(self, img: torch.Tensor, index: int, draw: int) -> torch.Tensor:
        from edgedistill.data.pipeline import apply_augment, draw_augment

        if self.augment is None:
            return img
        if self._draw is None or self._draw[0] != draw:
            self._draw = (draw, draw_augment(self.num_samples, self.augment, self.seed, draw))
        params = self._draw[1]
        return apply_augment(img[None], params.offsets[index:index + 1],
                             params.flips[index:index + 1], self.augment.crop_pad)[0]

    def eval(self, img: torch.Tensor) -> torch.Tensor:
        return img

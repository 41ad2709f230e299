"""Images as the alternatives to splitting send them: PNG, JPEG at quality 95 and 75.

The byte counts are what PIL writes for each test image (no estimates), and JPEG's
loss is measured by running the teacher on the decoded images. ``resize_splits``
makes the upscaled setting (e.g. Fashion-MNIST as 96x96 RGB) from any dataset.
"""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from edgedistill.errors import UsageError

FORMATS = {"png": ("PNG", {}), "jpeg95": ("JPEG", {"quality": 95}),
           "jpeg75": ("JPEG", {"quality": 75})}
MAX_PIXELS = 4096 * 4096
PNG_END = b"\0\0\0\0IEND\xaeB`\x82"  # the IEND chunk: length 0, type, CRC


def _pil(image: np.ndarray) -> Image.Image:
    """uint8 (C, H, W) with C = 1 or 3 as a PIL image."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3):
        raise UsageError(f"images must be uint8 (C, H, W) with 1 or 3 channels, got "
                         f"{image.dtype} {image.shape}")
    return Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))


def encode_image(image: np.ndarray, fmt: str) -> bytes:
    """One uint8 (C, H, W) image as PNG or JPEG bytes (``fmt`` in ``FORMATS``)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown image format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    kind, options = FORMATS[fmt]
    buf = io.BytesIO()
    _pil(image).save(buf, kind, **options)
    return buf.getvalue()


def to_array(img: Image.Image, channels: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """A PIL image as uint8 (C, H, W): converted to grey or RGB, resized if ``size``."""
    img = img.convert("L" if channels == 1 else "RGB")
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1).copy()


def decode_image(data: bytes, channels: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """PNG/JPEG bytes to uint8 (C, H, W); refuses undecodable, truncated and huge images.

    ``load()`` alone takes a PNG whose last chunks are cut off (its pixels are all in
    IDAT), so PNGs are also checked with ``verify()`` (chunk CRCs) and must end with the
    fixed IEND chunk; a cut JPEG fails ``load()`` as long as PIL's
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` keeps its default, False (nothing here sets it).
    """
    try:
        img = Image.open(io.BytesIO(data))
        if img.format not in ("PNG", "JPEG"):
            raise UsageError(f"image format {img.format} is not accepted; send PNG or JPEG")
        if img.width * img.height > MAX_PIXELS:
            raise UsageError(f"image of {img.width}x{img.height} pixels is too large")
        if img.format == "PNG":
            if not data.endswith(PNG_END):
                raise UsageError("PNG is truncated or has trailing bytes: it must end with "
                                 "its IEND chunk")
            img.verify()
            img = Image.open(io.BytesIO(data))
        img.load()
    except UsageError:
        raise
    except Exception as err:  # PIL raises many types for corrupt data
        raise UsageError(f"cannot decode image: {type(err).__name__}: {err}") from None
    return to_array(img, channels, size)


def normalize_uint8(images: np.ndarray, mean, std) -> np.ndarray:
    """uint8 (N, C, H, W) to float32 ``(x / 255 - mean) / std``, as the training pipeline does."""
    mean = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return (images.astype(np.float32) / np.float32(255) - mean) / std


def resize_images(images: torch.Tensor, size: int | None, channels: int | None,
                  chunk: int = 1024) -> torch.Tensor:
    """uint8 [N, C, H, W] resized (bilinear, antialiased) and/or grey copied to RGB."""
    if channels is not None and channels != images.shape[1] and images.shape[1] != 1:
        raise UsageError(f"input.channels={channels} needs 1-channel images, got "
                         f"{images.shape[1]} channels")
    out = []
    for part in images.split(chunk):
        x = part
        if size is not None and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
        if channels is not None and channels != x.shape[1]:
            x = x.expand(-1, channels, -1, -1)
        out.append(x.contiguous())
    return torch.cat(out)


def resize_splits(train, test, size: int | None, channels: int | None):
    """Both splits resized alike; normalization statistics recomputed on the train split."""
    from edgedistill.data.base import channel_stats

    if size is None and channels is None:
        return train, test
    train_x = resize_images(train.images, size, channels)
    test_x = resize_images(test.images, size, channels)
    mean, std = channel_stats(train_x)
    return (replace(train, images=train_x, mean=mean, std=std),
            replace(test, images=test_x, mean=mean, std=std))


def measure_encodings(images: np.ndarray) -> dict[str, dict[str, float | list]]:
    """Mean bytes per image for each format, and the decoded JPEG images (to score them)."""
    out: dict[str, dict] = {}
    channels = images.shape[1]
    for fmt in FORMATS:
        sizes, decoded = [], []
        for image in images:
            data = encode_image(image, fmt)
            sizes.append(len(data))
            if fmt != "png":
                decoded.append(decode_image(data, channels))
        out[fmt] = {"bytes_mean": float(np.mean(sizes)), "bytes_max": int(np.max(sizes)),
                    "decoded": np.stack(decoded) if decoded else None}
    return out

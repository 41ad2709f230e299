"""Any image classification set laid out as ``root/train/<class>/*.png|jpg`` (ImageNet style).

The test split is ``root/val`` or, failing that, ``root/test``, with the same class
folders. Images are decoded with PIL once, at load time, to RGB at ``image_size``
(shorter side resized, centre cropped to a square), so training reads only tensors.
Memory is N x 3 x image_size^2 bytes: choose ``image_size`` to fit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgedistill.data.base import DATASETS, AugmentSpec, make_splits
from edgedistill.data.paths import find_dir, missing
from edgedistill.errors import DataMissingError, UsageError

EXTENSIONS = {".png", ".jpg", ".jpeg"}
TEST_DIRS = ("val", "test")


def list_images(split_dir: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    """Image files and class numbers, in sorted order so loading is deterministic."""
    files, labels = [], []
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        if class_dir.name not in classes:
            raise UsageError(f"{class_dir} is a class that {split_dir.parent / 'train'} lacks")
        found = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in EXTENSIONS)
        files += found
        labels += [classes.index(class_dir.name)] * len(found)
    if not files:
        raise DataMissingError(f"no {'/'.join(sorted(EXTENSIONS))} images under {split_dir}")
    return files, labels


def decode(path: Path, size: int) -> np.ndarray:
    """One image as uint8 [3, size, size]."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))
            img = ImageOps.fit(img.convert("RGB"), (size, size), Image.Resampling.BICUBIC)
    except OSError as err:
        raise DataMissingError(f"cannot decode {path}: {err}") from err
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def load_split(split_dir: Path, classes: list[str], size: int):
    files, labels = list_images(split_dir, classes)
    images = np.stack([decode(f, size) for f in files])
    return images, np.asarray(labels, dtype=np.int64)


def locate(root) -> tuple[Path, Path, list[str]]:
    """(the folder, its test split, its class names), or the error that says where we looked."""
    folder, searched = find_dir(root, ("",), lambda d: (d / "train").is_dir())
    if folder is None:
        raise missing("an image folder (train/<class>/*.png|jpg)", searched,
                      "arrange images as <folder>/train/<class>/ and <folder>/val/<class>/")
    test_dir = next((folder / d for d in TEST_DIRS if (folder / d).is_dir()), None)
    if test_dir is None:
        raise missing("a test split (val/ or test/)", [folder / d for d in TEST_DIRS],
                      "put held-out images in <folder>/val/<class>/")
    classes = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    return folder, test_dir, classes


@DATASETS.register("imagefolder")
def load_imagefolder(root=None, seed=0, image_size: int = 64):
    """Folders of images per class (root/train, root/val or root/test), resized once to RGB."""
    if image_size < 1:
        raise UsageError(f"image_size must be >= 1, got {image_size}")
    folder, test_dir, classes = locate(root)
    return make_splits(
        f"imagefolder:{folder.name}", classes,
        load_split(folder / "train", classes, image_size),
        load_split(test_dir, classes, image_size),
        AugmentSpec(crop_pad=max(1, image_size // 8), hflip=True),
    )

"""Fashion-MNIST (60,000 train / 10,000 test, 28x28 grey) from its IDX files.

The files come from the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist/*.gz``) or from torchvision's download layout
(``<root>/FashionMNIST/raw/*-ubyte[.gz]``). IDX is a tiny header plus raw bytes, so
numpy reads it directly: no torchvision dataset object, no per-image decoding.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from edgedistill.data.base import DATASETS, AugmentSpec, make_splits
from edgedistill.data.paths import find_dir, missing
from edgedistill.errors import DataMissingError

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SUBDIRS = ("", "FashionMNIST/raw", "fashion-mnist", "fashion_mnist")
HOW = ("apt-get install dataset-fashion-mnist, or on a machine with a network "
       "torchvision.datasets.FashionMNIST(<folder>, download=True)")


def idx_file(folder: Path, stem: str) -> Path | None:
    """The plain or gzipped copy of an IDX file; plain first since it reads faster."""
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


def read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX file as an array shaped by its header."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataMissingError(f"{path} is truncated or damaged ({err}); delete it and fetch "
                               f"it again ({HOW})") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise DataMissingError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    start = 4 + 4 * ndim
    if len(data) - start != int(np.prod(dims)):
        raise DataMissingError(f"{path} is truncated: header says {dims}")
    return np.frombuffer(data, np.uint8, offset=start).reshape(dims).copy()


@DATASETS.register("fashion_mnist")
def load_fashion_mnist(root=None, seed=0):
    """Fashion-MNIST, 10 clothing classes, 60k/10k grey 28x28 (Debian or torchvision files)."""
    def complete(folder: Path) -> bool:
        return all(idx_file(folder, stem) for stem in FILES.values())

    folder, searched = find_dir(root, SUBDIRS, complete)
    if folder is None:
        raise missing("Fashion-MNIST (" + ", ".join(FILES.values()) + ", optionally .gz)",
                      searched, HOW)
    arrays = {key: read_idx(idx_file(folder, stem)) for key, stem in FILES.items()}
    return make_splits(
        "fashion_mnist", CLASSES,
        (arrays["train_images"][:, None], arrays["train_labels"].astype(np.int64)),
        (arrays["test_images"][:, None], arrays["test_labels"].astype(np.int64)),
        AugmentSpec(crop_pad=2, hflip=True),
    )

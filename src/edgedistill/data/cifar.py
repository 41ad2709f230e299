"""CIFAR-10 and CIFAR-100 from the official "python version" archives.

Layout under root: ``cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``,
``batches.meta``) or ``cifar-100-python/`` (``train``, ``test``, ``meta``), which is
also what torchvision downloads. The official format is Python pickles, so these
known files (and only these) are unpickled, by an unpickler that accepts nothing but
the numpy array types those files contain: a tampered file cannot run code.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:
    from numpy._core import multiarray, numeric
except ImportError:  # numpy < 2
    from numpy.core import multiarray, numeric

from edgedistill.data.base import DATASETS, AugmentSpec, make_splits
from edgedistill.data.paths import find_dir, missing
from edgedistill.errors import DataMissingError, UsageError

HOW = ("download and unpack https://www.cs.toronto.edu/~kriz/{archive} "
       "(or torchvision.datasets.{tv}(<folder>, download=True) where a network exists)")
AUGMENT = AugmentSpec(crop_pad=4, hflip=True)
# Official files were pickled by Python 2 with numpy.core; newer numpy writes numpy._core.
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
    ("numpy.core.numeric", "_frombuffer"): numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): numeric._frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays; refuses every other global."""

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):
            return super().find_class(module, name)
        if (module, name) in ALLOWED:
            return ALLOWED[module, name]
        raise pickle.UnpicklingError(f"refusing {module}.{name} in a CIFAR file")


def read_batch(path: Path) -> dict:
    """One pickled batch with its keys decoded to str (the files use Python 2 byte keys)."""
    with open(path, "rb") as f:
        try:
            batch = ArrayUnpickler(f, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as err:
            raise DataMissingError(f"{path} is not a CIFAR batch file: {err}") from err
    if not isinstance(batch, dict):
        raise DataMissingError(f"{path} is not a CIFAR batch file: holds {type(batch).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def to_images(data) -> np.ndarray:
    """Rows of 3072 bytes (R plane, G plane, B plane) as uint8 [N,3,32,32]."""
    return np.ascontiguousarray(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))


@dataclass(frozen=True)
class Layout:
    """Where one CIFAR variant keeps its files and which keys hold labels and names."""

    name: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    archive: str
    torchvision_name: str


def load_cifar(root, layout: Layout):
    files = (*layout.train_files, layout.test_file, layout.meta_file)
    folder, searched = find_dir(root, (layout.folder, ""),
                                lambda d: all((d / f).is_file() for f in files))
    if folder is None:
        raise missing(f"{layout.name} ({layout.folder}/)", searched,
                      HOW.format(archive=layout.archive, tv=layout.torchvision_name))
    meta = read_batch(folder / layout.meta_file)
    classes = [c.decode() if isinstance(c, bytes) else c for c in meta[layout.names_key]]
    parts = [read_batch(folder / f) for f in layout.train_files]
    test = read_batch(folder / layout.test_file)
    train_x = np.concatenate([to_images(p["data"]) for p in parts])
    train_y = np.concatenate([np.asarray(p[layout.label_key], dtype=np.int64) for p in parts])
    test_y = np.asarray(test[layout.label_key], dtype=np.int64)
    return make_splits(layout.name, classes, (train_x, train_y),
                       (to_images(test["data"]), test_y), AUGMENT)


@DATASETS.register("cifar10")
def load_cifar10(root=None, seed=0):
    """CIFAR-10, 10 object classes, 50k/10k colour 32x32 (official python pickles)."""
    return load_cifar(root, Layout(
        "cifar10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch", "batches.meta", "labels", "label_names",
        "cifar-10-python.tar.gz", "CIFAR10"))


@DATASETS.register("cifar100")
def load_cifar100(root=None, seed=0, labels: str = "fine"):
    """CIFAR-100, 100 fine (or 20 coarse) classes, 50k/10k colour 32x32 (python pickles)."""
    if labels not in ("fine", "coarse"):
        raise UsageError(f"cifar100 labels must be 'fine' or 'coarse', got {labels!r}")
    return load_cifar(root, Layout(
        "cifar100" if labels == "fine" else "cifar100_coarse", "cifar-100-python", ("train",),
        "test", "meta", f"{labels}_labels", f"{labels}_label_names",
        "cifar-100-python.tar.gz", "CIFAR100"))

"""A generated folder of 200 small JPEGs (4 classes, 160 train / 40 val, sizes varying)
that the streaming tests read, and the same images as WebDataset tar shards."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest


def write_jpeg_folder(root: Path, n_train: int = 160, n_val: int = 40, classes: int = 4,
                      seed: int = 0) -> Path:
    """Random-but-compressible colour images: a class tint plus noise, 36-60 px sides."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            c = i % classes
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            h, w = 36 + (i % 7) * 4, 40 + (i % 5) * 5
            tint = np.zeros((h, w, 3), np.int64)
            tint[..., c % 3] = 50 * (c + 1)
            pixels = np.clip(tint + rng.integers(0, 60, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:04d}.jpg", quality=90)
    return root


def write_shards(folder: Path, out: Path, per_shard: int = 64) -> Path:
    """The folder's images as WebDataset shards: <class>/<file>.jpg + .cls members, in the
    folder's sorted order, ``per_shard`` samples per tar."""
    for split in ("train", "val"):
        files = sorted(folder.glob(f"{split}/*/*.jpg"))
        classes = sorted({f.parent.name for f in files})
        (out / split).mkdir(parents=True, exist_ok=True)
        for k in range(0, len(files), per_shard):
            with tarfile.open(out / split / f"shard-{k // per_shard:04d}.tar", "w") as tar:
                for f in files[k:k + per_shard]:
                    key = f"{f.parent.name}/{f.stem}"
                    for name, data in ((f"{key}.jpg", f.read_bytes()),
                                       (f"{key}.cls", str(classes.index(f.parent.name)).encode())):
                        info = tarfile.TarInfo(name)
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
    return out


@pytest.fixture(scope="session")
def jpeg_folder(tmp_path_factory) -> Path:
    return write_jpeg_folder(tmp_path_factory.mktemp("jpegs"))

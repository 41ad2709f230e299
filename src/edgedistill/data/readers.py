"""Random access to the encoded samples of a streaming dataset, one reader per layout.

A reader answers ``read(i)`` (the i-th sample as its file holds it: encoded bytes as a
1-D uint8 tensor, or whatever a user's ``Dataset`` returns), ``where(i)`` (its file, for
errors) and ``key()`` (a digest of names, sizes and times, for the teacher cache). Random
access, not a sequential stream, is what lets the batch of (seed, epoch, step) be a pure
function: any process can read any sample, in any order.

WebDataset tar shards are read here with the standard library's ``tarfile``: one pass
over the headers records each member's offset, and samples are then read with one
seek each. The ``webdataset`` package streams shards sequentially (an
``IterableDataset``, shuffled through a buffer), which gives neither a per-epoch global
permutation fixed by the seed nor an exact mid-epoch resume.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
from pathlib import Path

import numpy as np
import torch

from edgedistill.data.transforms import as_bytes_tensor
from edgedistill.errors import DataMissingError, UsageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_KEY_FIELD = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


class FolderReader:
    """Image files on disk (the imagefolder layout, already listed)."""

    def __init__(self, files: list[Path]):
        self.files = [str(f) for f in files]

    def __len__(self) -> int:
        return len(self.files)

    def read(self, i: int) -> torch.Tensor:
        with open(self.files[i], "rb") as fh:
            return as_bytes_tensor(fh.read())

    def where(self, i: int) -> str:
        return self.files[i]

    def key(self) -> str:
        h = hashlib.sha256()
        for f in self.files:
            st = os.stat(f)
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()


def sample_field(name: str) -> tuple[str, str] | None:
    """(sample key, field) of a shard member, by WebDataset's rule (its ``base_plus_ext``
    pattern; fields lower-cased as its ``group_by_keys`` does): the key is the path up to
    the first dot of the file's name, the field the rest (``a/b/sample001.seg.jpg``:
    ``a/b/sample001``, ``seg.jpg``); None for a name without one."""
    match = _KEY_FIELD.match(name)
    return None if match is None else (match.group(1), match.group(2).lower())


class TarShardReader:
    """Samples of WebDataset shards (``key.jpg`` / ``key.jpeg`` / ``key.png`` with
    ``key.cls``), by offset. Other fields (``key.seg.png``, ``key.json``) are ignored."""

    def __init__(self, shards: list[Path]):
        self.shards = [str(s) for s in shards]
        self.members: list[tuple[int, int, int, str]] = []  # shard, offset, size, name
        self.labels: list[int] = []
        for number, shard in enumerate(self.shards):
            self._index(number, shard)
        self._handles: dict[int, object] = {}
        self._pid = -1

    def _index(self, number: int, shard: str) -> None:
        images, labels = {}, {}
        try:
            with tarfile.open(shard, "r:") as tar:
                for m in tar:
                    if not m.isfile() or (field := sample_field(m.name)) is None:
                        continue
                    key, ext = field
                    if f".{ext}" in IMAGE_EXTENSIONS:
                        if key in images:
                            raise DataMissingError(
                                f"{shard}: sample {key!r} has two images ({images[key][3]} "
                                f"and {m.name}); keep one .jpg, .jpeg or .png per sample")
                        images[key] = (number, m.offset_data, m.size, m.name)
                    elif ext == "cls":
                        labels[key] = int(tar.extractfile(m).read().decode().strip())
        except (tarfile.TarError, ValueError, OSError) as err:
            raise DataMissingError(f"{shard} is not a readable WebDataset shard "
                                   f"({type(err).__name__}: {err})") from None
        unlabelled = sorted(set(images) - set(labels))
        if unlabelled:
            raise DataMissingError(f"{shard}: sample {unlabelled[0]!r} has an image but no "
                                   f".cls label ({len(unlabelled)} such samples)")
        for stem in sorted(images):
            self.members.append(images[stem])
            self.labels.append(labels[stem])

    def __len__(self) -> int:
        return len(self.members)

    def read(self, i: int) -> torch.Tensor:
        if self._pid != os.getpid():  # file handles do not survive a fork into a worker
            self._handles, self._pid = {}, os.getpid()
        shard, offset, size, _ = self.members[i]
        fh = self._handles.get(shard)
        if fh is None:
            fh = self._handles[shard] = open(self.shards[shard], "rb")
        fh.seek(offset)
        return as_bytes_tensor(fh.read(size))

    def where(self, i: int) -> str:
        shard, _, _, name = self.members[i]
        return f"{self.shards[shard]}:{name}"

    def key(self) -> str:
        h = hashlib.sha256()
        for s in self.shards:
            st = os.stat(s)
            h.update(f"{s}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def __getstate__(self):
        return {**self.__dict__, "_handles": {}, "_pid": -1}


class DatasetReader:
    """A user's map-style ``torch.utils.data.Dataset`` returning (image, label) pairs."""

    def __init__(self, dataset, name: str = "dataset"):
        self.dataset = dataset
        self.name = name

    def __len__(self) -> int:
        return len(self.dataset)

    def read(self, i: int):
        item = self.dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise UsageError(f"{self.name}[{i}] must be an (image, label) pair, got "
                             f"{type(item).__name__}")
        return item[0]

    def label(self, i: int) -> int:
        return int(self.dataset[i][1])

    def where(self, i: int) -> str:
        return f"{self.name}[{i}]"

    def key(self) -> str:
        """Class, length and a digest of a few items (the first, middle and last
        ``FINGERPRINT_ITEMS``, image bytes and label): a Dataset changed at one of them
        but not in length gets a new key. Cheap, so not exhaustive: an edit elsewhere in
        a set of the same length keeps the key."""
        n = len(self.dataset)
        h = hashlib.sha256()
        for i in fingerprint_positions(n):
            item = self.dataset[i]
            h.update(f"{i}:{item[1]!r}:".encode())
            h.update(_item_bytes(item[0]))
        return f"{type(self.dataset).__module__}.{type(self.dataset).__qualname__}:" \
               f"{self.name}:{n}:{h.hexdigest()}"


FINGERPRINT_ITEMS = 8  # per end and the middle: 24 items read for a DatasetReader's key


def fingerprint_positions(n: int) -> list[int]:
    """The first, middle and last ``FINGERPRINT_ITEMS`` positions of ``n`` (each once)."""
    k, mid = FINGERPRINT_ITEMS, max(0, n // 2 - FINGERPRINT_ITEMS // 2)
    return sorted({*range(min(k, n)), *range(mid, min(mid + k, n)), *range(max(0, n - k), n)})


def _item_bytes(value) -> bytes:
    """An image as its dataset gives it (tensor, array, PIL image, encoded bytes), as
    bytes with its type and shape."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if hasattr(value, "getbands"):  # PIL
        return f"{value.mode}{value.size}".encode() + value.tobytes()
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        value = value.contiguous().numpy()
    array = np.ascontiguousarray(np.asarray(value))
    return f"{array.dtype}{array.shape}".encode() + array.tobytes()

"""A cache of teacher outputs, computed once per (sample, augmentation draw).

Online KD pays a teacher forward pass on every step. With a fixed number of
augmentation draws per sample, reused cyclically (epoch e uses draw e mod D), the
teacher's answer for every (sample, draw) can be computed once, stored as fp16
arrays memory-mapped from disk, and shared by every later epoch and every student
trained on the same teacher and data. The directory name is a hash of everything
that changes the answer (teacher weights, dataset contents, augmentation, seed,
layers, top-k); a directory whose recorded key differs is refused, never reused.

What is stored is verified: every value is checked finite as it is written (an fp16
overflow says to use ``precision: fp32``), and ``meta.json`` records each shard's size
and CRC-32, checked whenever the cache is opened (one read of each file, 0.7 GB/s on
the 2-core development machine). A cache that fails the check (``meta.json`` not JSON,
a truncated, missing or edited ``.npy``, a cache from before checksums) is derived
data: it is deleted and rebuilt, with a line that names the file and the reason.

Under data-parallel training rank 0 checks and builds the cache while the other ranks
wait at a barrier, then they map the same files: it is built once, never per rank.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgedistill.config import CacheConfig
from edgedistill.distill.online import TeacherRunner
from edgedistill.distill.sources import SOURCES, TeacherOutputs, TeacherSource
from edgedistill.errors import UsageError
from edgedistill.train.distributed import main_first

FORMAT_VERSION = 1


def fingerprint(teacher: nn.Module, train_pipe, layers: list[str], num_draws: int,
                top_k: int | None, precision: str = "fp16") -> str:
    h = hashlib.sha256()
    h.update(json.dumps(getattr(teacher, "spec", {}), sort_keys=True).encode())
    for name, tensor in sorted(teacher.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    data = train_pipe.data
    h.update(data.name.encode())
    if getattr(train_pipe, "streaming", False):  # files, recipe and decoder, not pixels
        h.update(train_pipe.content_key().encode())
    else:
        h.update(data.images.numpy().tobytes())
        h.update(data.labels.numpy().tobytes())
    aug = getattr(train_pipe, "augment", None) if not getattr(train_pipe, "streaming",
                                                              False) else None
    desc = {"seed": train_pipe.seed, "augment": [aug.crop_pad, aug.hflip] if aug else None,
            "draws": num_draws, "layers": layers, "top_k": top_k, "v": FORMAT_VERSION,
            "mean": data.mean, "std": data.std}
    if precision != "fp16":  # fp16 caches keep the key they always had
        desc["precision"] = precision
    h.update(json.dumps(desc, sort_keys=True).encode())
    return h.hexdigest()


def crc32_file(path: Path) -> str:
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dense_from_topk(values: torch.Tensor, indices: torch.Tensor, num_classes: int
                    ) -> torch.Tensor:
    """Logits with the top-k kept and the rest set 10 below the k-th value, so their
    softmax mass is negligible (e^-10 each) but every loss stays finite."""
    fill = values.min(dim=1, keepdim=True).values - 10.0
    dense = fill.expand(values.shape[0], num_classes).clone()
    return dense.scatter_(1, indices, values)


@SOURCES.register("cache", settings=CacheConfig)
class CacheSource(TeacherSource):
    """Teacher outputs precomputed per (sample, draw), fp16 (or fp32: the online
    teacher's values exactly), memory-mapped from disk."""

    def __init__(self, teacher: nn.Module, root: str | Path, device: torch.device,
                 num_draws: int = 4, top_k: int | None = None, batch_size: int = 512,
                 amp: bool = True, log=print, precision: str = "fp16"):
        super().__init__()
        self.teacher = teacher
        self.root = Path(root)
        self.device = device
        self.num_draws = num_draws
        self.top_k = top_k
        self.batch_size = batch_size
        self.amp = amp
        if precision not in ("fp16", "fp32"):
            raise UsageError(f"cache precision {precision!r} is not one of fp16, fp32")
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.precision = precision
        self.log = log
        self.build_seconds = 0.0
        self.arrays: dict[str, np.ndarray] = {}

    @classmethod
    def from_config(cls, cfg, teacher: nn.Module, device: torch.device,
                    run_dir: Path) -> CacheSource:
        c = cfg.teacher.cache
        root = Path(c.dir) if c.dir else run_dir.parent / ".teacher_cache"
        return cls(teacher, root, device, num_draws=c.num_draws, top_k=c.top_k,
                   batch_size=c.batch_size, amp=cfg.train.amp, precision=c.precision)

    @classmethod
    def pipeline_draws(cls, cfg) -> int:
        return cfg.teacher.cache.num_draws

    def attach(self, layers: list[str], train_pipe) -> None:
        super().attach(layers, train_pipe)
        if train_pipe.num_draws != self.num_draws:
            raise UsageError(f"teacher cache has {self.num_draws} draws but the training "
                             f"pipeline cycles {train_pipe.num_draws}; set data.num_draws to "
                             "teacher.cache.num_draws (or leave it empty)")
        if train_pipe.augment is None:
            self.num_draws = 1
        self.key = fingerprint(self.teacher, train_pipe, self.layers, self.num_draws, self.top_k,
                               self.precision)
        self.dir = self.root / self.key[:24]
        meta_path = self.dir / "meta.json"
        with main_first() as rank:  # data-parallel: rank 0 checks and builds, once
            if not rank.main:
                if not meta_path.exists():
                    raise UsageError(f"teacher cache {self.dir}, built by rank 0, is not "
                                     f"visible to rank {rank.rank}; put teacher.cache.dir on "
                                     "a file system that every machine of the job shares")
            elif meta_path.exists() and (problem := self._problem(meta_path)) is None:
                self.log(f"teacher cache: reusing {self.dir}")
            else:
                if meta_path.exists():
                    self.log(f"teacher cache: {problem}; deleting {self.dir} and rebuilding it")
                    shutil.rmtree(self.dir)
                self._build(train_pipe)
        meta = json.loads(meta_path.read_text())
        self.num_classes = meta["num_classes"]
        for name in meta["shards"]:
            self.arrays[Path(name).stem] = np.load(self.dir / name, mmap_mode="r")

    def _problem(self, meta_path: Path) -> str | None:
        """Why the cache on disk cannot be used as it is (None: it can)."""
        try:
            meta = json.loads(meta_path.read_text())
            key, shards, _ = meta.get("key"), meta.get("shards"), meta["num_classes"]
        except (ValueError, AttributeError, KeyError, TypeError) as err:
            return f"{meta_path} is not a JSON object ({type(err).__name__})"
        if key != self.key:
            raise UsageError(f"teacher cache {self.dir} was built for another teacher or "
                             "dataset (hash mismatch); delete that folder to rebuild it")
        if not isinstance(shards, dict) or not shards:
            return f"{meta_path} records no checksums (written before edgedistill kept them)"
        for name, want in shards.items():
            path = self.dir / name
            if not path.is_file():
                return f"{path} is missing"
            try:
                size, crc = want["bytes"], want["crc32"]
            except (TypeError, KeyError):
                return f"{meta_path} has a malformed entry for {name}"
            if path.stat().st_size != size:
                return f"{path} has {path.stat().st_size} bytes, not {size} (truncated)"
            if crc32_file(path) != crc:
                return f"{path} does not match its CRC-32 (damaged or edited)"
        return None

    def _build(self, pipe) -> None:
        tic = time.perf_counter()
        runner = TeacherRunner(self.teacher, self.layers, self.device, self.amp)
        n = len(pipe.data)
        self._remove_stale_builds()
        tmp = self.dir.with_name(f"{self.dir.name}.building-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            num_classes = self._fill(runner, pipe, tmp)
            self._finish(tmp, num_classes, n, pipe.data.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.build_seconds = time.perf_counter() - tic
        self.log(f"teacher cache: built {self.num_draws} draws x {n} samples in "
                 f"{self.build_seconds:.1f}s at {self.dir}")

    def _remove_stale_builds(self) -> None:
        """Delete half-built folders of this key whose builder process is gone (killed)."""
        for stale in self.dir.parent.glob(f"{self.dir.name}.building-*"):
            pid = stale.name.rsplit("-", 1)[1]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)

    def _fill(self, runner: TeacherRunner, pipe, tmp: Path) -> int:
        """Run the teacher over every (sample, draw) into ``.npy`` files in ``tmp``."""
        from edgedistill.data import normalize
        from edgedistill.data.streaming import dataset_batches

        data = pipe.data
        n = len(data)
        arrays: dict[str, np.ndarray] = {}
        num_classes = None
        for draw in range(self.num_draws):
            for idx, raw in dataset_batches(pipe, draw, self.batch_size):
                out = runner(normalize(raw, data.mean, data.std))
                num_classes = out.logits.shape[1]
                self._store(arrays, tmp, draw, idx, out, n)
        for arr in arrays.values():
            arr.flush()
        return num_classes

    def _finish(self, tmp: Path, num_classes: int, n: int, dataset: str) -> None:
        """Checksum the shards, write ``meta.json`` last and move the folder in place (a
        concurrent build of the same key that got there first wins; ours is dropped)."""
        shards = {p.name: {"bytes": p.stat().st_size, "crc32": crc32_file(p)}
                  for p in sorted(tmp.glob("*.npy"))}
        meta = {"key": self.key, "num_classes": num_classes, "num_draws": self.num_draws,
                "layers": self.layers, "top_k": self.top_k, "samples": n,
                "teacher": getattr(self.teacher, "spec", {}), "dataset": dataset,
                "shards": shards}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        try:
            tmp.rename(self.dir)
        except OSError:
            if not (self.dir / "meta.json").exists():
                raise

    def _store(self, arrays, folder: Path, draw: int, idx: torch.Tensor, out: TeacherOutputs,
               n: int) -> None:
        items = {}  # file stem -> (tensor to store, what it holds)
        if self.top_k:
            values, indices = out.logits.topk(self.top_k, dim=1)
            items["topv"] = (values.to(self.dtype), "logits")
            items["topi"] = (indices.to(torch.int16), "logits")
        else:
            items["logits"] = (out.logits.to(self.dtype), "logits")
        for j, path in enumerate(self.layers):
            items[f"feat{j}"] = (out.features[path].to(self.dtype).contiguous(), path)
        for name, (tensor, what) in items.items():
            key = f"{name}_d{draw}"
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                source = out.logits if what == "logits" else out.features[what]
                self._not_finite(what, source, draw, idx)
            values = tensor.cpu().numpy()
            if key not in arrays:
                arrays[key] = np.lib.format.open_memmap(
                    folder / f"{key}.npy", mode="w+", dtype=values.dtype,
                    shape=(n, *values.shape[1:]))
            arrays[key][idx.numpy()] = values

    def _not_finite(self, what: str, source: torch.Tensor, draw: int, idx: torch.Tensor) -> None:
        """Refuse to store a non-finite value: say whether the teacher or the cast made it."""
        where = (f"the teacher's {'logits' if what == 'logits' else 'layer ' + repr(what)} for "
                 f"samples {int(idx[0])}-{int(idx[-1])} of draw {draw}")
        if torch.isfinite(source).all():
            raise UsageError(f"teacher cache: {where} overflow {self.precision}; set "
                             "teacher.cache.precision: fp32")
        name = getattr(self.teacher, "spec", {}).get("name", "the teacher")
        raise UsageError(f"teacher cache: {where} are not finite; check the weights of {name}, "
                         "or set train.amp: false if autocast overflowed")

    def _take(self, name: str, draw: int, idx: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.arrays[f"{name}_d{draw}"][idx]))

    def outputs(self, batch) -> TeacherOutputs:
        draw = batch.draw % self.num_draws
        idx = batch.indices.cpu().numpy()
        if self.top_k:
            logits = dense_from_topk(self._take("topv", draw, idx).float(),
                                     self._take("topi", draw, idx).long(), self.num_classes)
        else:
            logits = self._take("logits", draw, idx).float()
        feats = {p: self._take(f"feat{j}", draw, idx).float().to(self.device, non_blocking=True)
                 for j, p in enumerate(self.layers)}
        return TeacherOutputs(logits.to(self.device, non_blocking=True), feats)

    def stats(self) -> dict[str, float]:
        out = super().stats()
        if self.build_seconds:
            out["cache_build_s"], self.build_seconds = self.build_seconds, 0.0
        return out

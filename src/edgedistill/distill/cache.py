"""A cache of teacher outputs, computed once per (sample, augmentation draw).

Online KD pays a teacher forward pass on every step. With a fixed number of
augmentation draws per sample, reused cyclically (epoch e uses draw e mod D), the
teacher's answer for every (sample, draw) can be computed once, stored as fp16
arrays memory-mapped from disk, and shared by every later epoch and every student
trained on the same teacher and data. The directory name is a hash of everything
that changes the answer (teacher weights, dataset contents, augmentation, seed,
layers, top-k); a directory whose recorded key differs is refused, never reused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgedistill.distill.sources import SOURCES, TeacherOutputs, TeacherRunner, TeacherSource
from edgedistill.errors import UsageError

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
    h.update(data.images.numpy().tobytes())
    h.update(data.labels.numpy().tobytes())
    aug = train_pipe.augment
    desc = {"seed": train_pipe.seed, "augment": [aug.crop_pad, aug.hflip] if aug else None,
            "draws": num_draws, "layers": layers, "top_k": top_k, "v": FORMAT_VERSION,
            "mean": data.mean, "std": data.std}
    if precision != "fp16":  # fp16 caches keep the key they always had
        desc["precision"] = precision
    h.update(json.dumps(desc, sort_keys=True).encode())
    return h.hexdigest()


def dense_from_topk(values: torch.Tensor, indices: torch.Tensor, num_classes: int
                    ) -> torch.Tensor:
    """Logits with the top-k kept and the rest set 10 below the k-th value, so their
    softmax mass is negligible (e^-10 each) but every loss stays finite."""
    fill = values.min(dim=1, keepdim=True).values - 10.0
    dense = fill.expand(values.shape[0], num_classes).clone()
    return dense.scatter_(1, indices, values)


@SOURCES.register("cache")
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
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("key") != self.key:
                raise UsageError(f"teacher cache {self.dir} was built for another teacher or "
                                 "dataset (hash mismatch); delete that folder to rebuild it")
            self.log(f"teacher cache: reusing {self.dir}")
        else:
            self._build(train_pipe)
        self.num_classes = json.loads(meta_path.read_text())["num_classes"]
        for path in self.dir.glob("*.npy"):
            self.arrays[path.stem] = np.load(path, mmap_mode="r")

    def _build(self, pipe) -> None:
        tic = time.perf_counter()
        from edgedistill.data import apply_augment, normalize

        runner = TeacherRunner(self.teacher, self.layers, self.device, self.amp)
        data = pipe.data
        n = len(data)
        tmp = self.dir.with_name(self.dir.name + ".building")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        arrays: dict[str, np.ndarray] = {}
        pad = pipe.augment.crop_pad if pipe.augment else 0
        num_classes = None
        for draw in range(self.num_draws):
            params = pipe.draw_params(draw) if pipe.augment else None
            for start in range(0, n, self.batch_size):
                idx = torch.arange(start, min(start + self.batch_size, n))
                raw = data.images[idx]
                if params is not None:
                    raw = apply_augment(raw, params.offsets[idx], params.flips[idx], pad)
                out = runner(normalize(raw, data.mean, data.std))
                num_classes = out.logits.shape[1]
                self._store(arrays, tmp, draw, idx, out, n)
        for arr in arrays.values():
            arr.flush()
        meta = {"key": self.key, "num_classes": num_classes, "num_draws": self.num_draws,
                "layers": self.layers, "top_k": self.top_k, "samples": n,
                "teacher": getattr(self.teacher, "spec", {}), "dataset": data.name}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        tmp.rename(self.dir)
        self.build_seconds = time.perf_counter() - tic
        self.log(f"teacher cache: built {self.num_draws} draws x {n} samples in "
                 f"{self.build_seconds:.1f}s at {self.dir}")

    def _store(self, arrays, folder: Path, draw: int, idx: torch.Tensor, out: TeacherOutputs,
               n: int) -> None:
        items = {}
        if self.top_k:
            values, indices = out.logits.topk(self.top_k, dim=1)
            items["topv"], items["topi"] = values.to(self.dtype), indices.to(torch.int16)
        else:
            items["logits"] = out.logits.to(self.dtype)
        for j, path in enumerate(self.layers):
            items[f"feat{j}"] = out.features[path].to(self.dtype).contiguous()
        for name, tensor in items.items():
            key = f"{name}_d{draw}"
            values = tensor.cpu().numpy()
            if key not in arrays:
                arrays[key] = np.lib.format.open_memmap(
                    folder / f"{key}.npy", mode="w+", dtype=values.dtype,
                    shape=(n, *values.shape[1:]))
            arrays[key][idx.numpy()] = values

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

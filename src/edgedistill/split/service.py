"""What the edge server computes, independent of HTTP: the tail and the whole teacher.

Both run either in PyTorch or in ONNX Runtime (exported once into the run
directory, re-exported when the weights are newer), behind one numpy-in,
numpy-out callable, so the server code does not care which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgedistill.errors import UsageError
from edgedistill.split.images import normalize_uint8
from edgedistill.split.model import bottleneck_dir, load_split, read_meta
from edgedistill.split.wire import COMPRESSIONS, WireError, WireTensor

BACKENDS = ("torch", "onnx")
Runner = Callable[[np.ndarray], np.ndarray]


def torch_runner(module: nn.Module) -> Runner:
    module = module.eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()

    return run


def onnx_runner(module: nn.Module, input_shape, path: Path, source: Path,
                threads: int | None) -> Runner:
    """Export ``module`` to ``path`` unless an export newer than ``source`` is there."""
    from edgedistill.export.onnx import export_onnx, run_session, session

    if not path.exists() or path.stat().st_mtime < source.stat().st_mtime:
        export_onnx(module, (1, *input_shape), path)
    sess = session(path, threads)
    return lambda x: run_session(sess, x)


@dataclass
class SplitService:
    """The models and shapes one server needs for one bottleneck of a split run."""

    name: str
    bottleneck_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    mean: list[float]
    std: list[float]
    classes: list[str]
    run_tail: Runner
    run_teacher: Runner
    backend: str
    entropy: object | None = None  # entropy.EntropyCodec of an entropy bottleneck

    @property
    def codecs(self) -> list[str]:
        """The wire codecs this bottleneck's server decodes."""
        return [*COMPRESSIONS, *(["entropy"] if self.entropy is not None else [])]

    def to_float(self, tensor: WireTensor) -> np.ndarray:
        """The bottleneck values of a decoded message: entropy streams through this
        bottleneck's entropy model, other codecs as the wire format gives them."""
        if tensor.codec != "entropy":
            return tensor.to_float()
        if self.entropy is None:
            raise WireError(f"bottleneck {self.name} has no entropy model, so it cannot "
                            "decode the entropy codec; send 8-bit messages (codec none or "
                            "zlib)", 415)
        return self.entropy.decode(tensor.streams, tensor.shape)

    @classmethod
    def from_run(cls, run_dir: str | Path, bottleneck: str | None = None,
                 backend: str = "onnx", threads: int | None = 1) -> SplitService:
        if backend not in BACKENDS:
            raise UsageError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        if threads:
            torch.set_num_threads(threads)
        meta = read_meta(run_dir)
        bdir = bottleneck_dir(run_dir, bottleneck)
        model = load_split(bdir)
        server_part, teacher = model.server_part().eval(), model.teacher
        z_shape = tuple(model.head.bottleneck_shape)
        input_shape = tuple(meta["input_shape"])
        if backend == "torch":
            run_tail, run_teacher = torch_runner(server_part), torch_runner(teacher)
        else:
            weights = bdir / "model.safetensors"
            run_tail = onnx_runner(server_part, z_shape, bdir / "export" / "server.onnx",
                                   weights, threads)
            run_teacher = onnx_runner(teacher, input_shape, bdir / "export" / "teacher.onnx",
                                      weights, threads)
        entropy = None
        if hasattr(model.head, "entropy"):
            from edgedistill.split.entropy import EntropyCodec

            entropy = EntropyCodec(model.head.entropy)
        return cls(bdir.name, z_shape, input_shape, meta["mean"], meta["std"],
                   meta["classes"], run_tail, run_teacher, backend, entropy)

    def normalize(self, images: np.ndarray) -> np.ndarray:
        return normalize_uint8(images, self.mean, self.std)

"""One teacher replica: loads the teacher, rebuilds the student's input, answers requests.

The pool wraps ``ReplicaWorker`` as a Ray actor (one process each, its own CPUs or GPU);
it stays a plain class so its backends can be checked without Ray. Backends:

* ``torch``: the model with forward hooks, fp32 on CPU threads, bf16 autocast on a GPU;
* ``onnx`` / ``onnx-int8``: the model exported to ONNX with the requested features as
  extra outputs, int8 by static calibration on real training images. The export is
  cached per node (keyed by weights, layers, input and calibration), so a replaced
  replica on the same node starts without exporting or calibrating again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgedistill.elastic.protocol import InputSpec, Reply, Request, encode, prepare_images
from edgedistill.elastic.spec import ReplicaSpec
from edgedistill.errors import UsageError


def node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"


class TorchBackend:
    def __init__(self, model: nn.Module, layers: list[str], spec: ReplicaSpec):
        from edgedistill.distill.sources import TeacherRunner

        if spec.num_gpus and not torch.cuda.is_available():
            raise UsageError(f"replica {spec.describe()} was given a GPU slot but this node "
                             "has no CUDA device")
        device = torch.device("cuda" if spec.num_gpus else "cpu")
        self.runner = TeacherRunner(model, layers, device)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.runner(images)
        return out.logits, out.features


class WithFeatures(nn.Module):
    """The teacher returning (logits, *features) so ONNX export makes them outputs."""

    def __init__(self, model: nn.Module, layers: list[str]):
        from edgedistill.models import FeatureExtractor

        super().__init__()
        self.model = model
        self.layers = list(layers)
        self.extractor = FeatureExtractor(model, layers)

    def forward(self, x: torch.Tensor):
        logits = self.model(x)
        feats = self.extractor.features
        return (logits, *[feats[p] for p in self.layers])


def export_with_features(model: nn.Module, layers: list[str], shape: tuple[int, ...],
                         path: str | Path) -> None:
    from edgedistill.export.onnx import export_onnx

    if not layers:
        export_onnx(model, (1, *shape), path)
        return
    names = ["logits", *[f"feat{i}" for i in range(len(layers))]]
    torch.onnx.export(WithFeatures(model, layers).eval(), (torch.zeros(1, *shape),), str(path),
                      input_names=["input"], output_names=names,
                      dynamic_axes={n: {0: "batch"} for n in ["input", *names]},
                      opset_version=17, dynamo=False)


def _digest(*parts) -> str:
    """A short hash of JSON-able values, arrays and state dicts (name -> tensor)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, dict) and all(isinstance(v, torch.Tensor) for v in part.values()):
            for name, tensor in sorted(part.items()):
                h.update(name.encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(part, np.ndarray):
            h.update(part.tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


def onnx_model(model: nn.Module, layers: list[str], inputs: InputSpec, int8: bool,
               calibration: Request | None) -> Path:
    """Path of the node-cached ONNX file (fp32 or int8) for this teacher and layer set."""
    import onnxruntime

    from edgedistill.export.onnx import quantize_int8
    from edgedistill.train.checkpoint import atomic_write

    folder = Path(tempfile.gettempdir()) / "edgedistill-onnx"
    versions = [torch.__version__, onnxruntime.__version__]
    key = _digest(getattr(model, "spec", {}), model.state_dict(), layers, inputs.shape, versions)
    fp32 = folder / f"{key}.onnx"
    if not fp32.exists():
        atomic_write(fp32, lambda tmp: export_with_features(model, layers, inputs.shape, tmp))
    if not int8:
        return fp32
    if calibration is None:
        raise UsageError("backend onnx-int8 needs calibration images; the pool sends them")
    calib = prepare_images(calibration, inputs).numpy()
    q = folder / f"{key}-{_digest(calib)}.int8.onnx"
    if not q.exists():
        atomic_write(q, lambda tmp: quantize_int8(fp32, tmp, calib))
    return q


class OnnxBackend:
    def __init__(self, model: nn.Module, layers: list[str], spec: ReplicaSpec, inputs: InputSpec,
                 calibration: Request | None):
        from edgedistill.export.onnx import session

        path = onnx_model(model, layers, inputs, spec.backend == "onnx-int8", calibration)
        self.sess = session(path, spec.threads)
        self.layers = list(layers)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        outs = self.sess.run(None, {"input": images.numpy()})
        feats = {p: torch.from_numpy(o) for p, o in zip(self.layers, outs[1:], strict=True)}
        return torch.from_numpy(outs[0]), feats


class ReplicaWorker:
    """A teacher replica. ``__init__`` only stores its orders so that a teacher that
    cannot load fails in ``load`` with a clear message, not as an opaque actor death."""

    def __init__(self, replica_id: int, source: str, spec: ReplicaSpec, layers: list[str],
                 inputs: InputSpec, calibration: Request | None = None):
        self.replica_id = replica_id
        self.source = source
        self.spec = spec
        self.layers = list(layers)
        self.inputs = inputs
        self.calibration = calibration
        self.backend = None

    def load(self) -> dict:
        """Load the teacher, build the backend and run it once (so a backend that cannot
        run fails here, and the first real batch is not slow); returns where it runs."""
        from edgedistill import api

        tic = time.perf_counter()
        torch.set_num_threads(self.spec.threads)
        where = f"replica {self.replica_id} ({self.spec.describe()}, node {node_id()[:12]})"
        try:
            model = api.load_model(self.source)
        except Exception as err:
            if not isinstance(self.source, str):  # a model config: {factory: ...} etc.
                raise UsageError(f"{where} cannot build teacher {api.describe_source(self.source)}"
                                 f": {err}. The factory (and its weights file) must be "
                                 "importable on every node: install its package there or put "
                                 "the .py file and weights on a shared filesystem") from None
            raise UsageError(f"{where} cannot load teacher {self.source!r}: {err}. On a "
                             "cluster the teacher must exist on every node: use zoo:NAME or "
                             "a path on a shared filesystem") from None
        if self.spec.backend == "torch":
            self.backend = TorchBackend(model, self.layers, self.spec)
        else:
            self.backend = OnnxBackend(model, self.layers, self.spec, self.inputs,
                                       self.calibration)
        self.infer(Request((-1, -1), np.zeros((1, *self.inputs.shape), np.uint8)))
        return {"pid": os.getpid(), "node": node_id(), "load_s": time.perf_counter() - tic}

    def infer(self, request: Request) -> Reply:
        tic = time.perf_counter()
        with torch.inference_mode():
            logits, feats = self.backend(prepare_images(request, self.inputs))
            if request.layers is not None:  # a shared replica hooks every student's layers
                feats = {p: feats[p] for p in request.layers}
            reply = encode(request.key, logits, feats, request.top_k, request.precision)
        reply.compute_s = time.perf_counter() - tic
        reply.replica = self.replica_id
        return reply

    def ping(self) -> int:
        return os.getpid()

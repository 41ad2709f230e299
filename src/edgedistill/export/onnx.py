"""ONNX export checked against PyTorch, ONNX Runtime int8 quantization and latency.

Edge runtimes run ONNX, not PyTorch, so an exported model is only trusted once its
outputs match PyTorch's on real inputs (max abs diff reported) and its latency is
measured in ONNX Runtime itself.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgedistill.errors import UsageError


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: str | Path,
                opset: int = 17) -> Path:
    """Export with a dynamic batch dimension; the model is put in eval mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    dummy = torch.zeros(1, *input_shape[1:])
    torch.onnx.export(model, (dummy,), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=opset, dynamo=False)
    return path


def session(path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_session(sess, images: np.ndarray) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: images.astype(np.float32)})[0]


def call_times_ms(sess, input_shape: tuple[int, ...], warmup: int = 5, repeats: int = 30
                  ) -> list[float]:
    """Wall time of each of ``repeats`` calls on a fixed random input, after ``warmup``."""
    x = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
    for _ in range(warmup):
        run_session(sess, x)
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        run_session(sess, x)
        times.append((time.perf_counter() - tic) * 1e3)
    return times


def measure_latency(sess, input_shape: tuple[int, ...], warmup: int = 5, repeats: int = 30
                    ) -> dict[str, float]:
    """Median and p90 wall time of one call, in milliseconds."""
    times = sorted(call_times_ms(sess, input_shape, warmup, repeats))
    return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))]}


def quantize_int8(fp32_path: str | Path, out_path: str | Path, calib_images: np.ndarray
                  ) -> Path:
    """Static int8 (QDQ, per-channel weights) calibrated on real images."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        """Feeds real, normalized training images to the calibrator, 64 at a time."""

        def __init__(self, images: np.ndarray):
            self.batches = [images[i:i + 64] for i in range(0, len(images), 64)]

        def get_next(self):
            return {"input": self.batches.pop(0)} if self.batches else None

    pre = Path(out_path).with_suffix(".pre.onnx")
    quant_pre_process(str(fp32_path), str(pre))
    reader = Reader(calib_images.astype(np.float32))
    quantize_static(str(pre), str(out_path), reader, quant_format=QuantFormat.QDQ,
                    per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8)
    pre.unlink(missing_ok=True)
    return Path(out_path)


def onnx_accuracy(sess, pipe) -> float:
    correct = seen = 0
    for batch in pipe.epoch(0):
        logits = run_session(sess, batch.images.cpu().numpy())
        correct += int((logits.argmax(1) == batch.labels.cpu().numpy()).sum())
        seen += batch.labels.numel()
    return correct / max(seen, 1)


def export_run(run_dir: str | Path, int8: bool = False, limit_test: int | None = None,
               threads: int | None = None) -> dict[str, Any]:
    """Export a run's model to ``RUN_DIR/export/model.onnx`` (and ``model.int8.onnx``)."""
    from edgedistill import api

    run_dir = Path(run_dir)
    if api.run_dir_of(run_dir) != run_dir:
        raise UsageError(f"{str(run_dir)!r} is not a run directory (no config.yaml)")
    data_cfg = api.run_data_config(run_dir)
    if limit_test:
        data_cfg = data_cfg.model_copy(update={"limit_test": limit_test})
    train_data, test_data = api.build_data(data_cfg, 0)
    _, test_pipe = api.build_pipelines(data_cfg, train_data, test_data, 0, torch.device("cpu"))
    model = api.load_model(run_dir)
    shape = (1, *test_data.images.shape[1:])
    out_dir = run_dir / "export"
    fp32 = export_onnx(model, shape, out_dir / "model.onnx")
    sess = session(fp32, threads)
    first = next(iter(test_pipe.epoch(0)))
    with torch.no_grad():
        ref = model(first.images).numpy()
    diff = float(np.abs(run_session(sess, first.images.numpy()) - ref).max())
    result: dict[str, Any] = {
        "onnx": str(fp32), "max_abs_diff_vs_torch": diff,
        "torch_test_acc": api_accuracy(model, test_pipe),
        "onnx_test_acc": onnx_accuracy(sess, test_pipe),
        "onnx_latency_ms_b1": measure_latency(sess, shape)["median_ms"],
        "onnx_bytes": fp32.stat().st_size,
    }
    if int8:
        calib_pipe, _ = api.build_pipelines(data_cfg, train_data, test_data, 0,
                                            torch.device("cpu"))
        calib = next(iter(calib_pipe.epoch(0))).images.numpy()[:256]
        q = quantize_int8(fp32, out_dir / "model.int8.onnx", calib)
        qsess = session(q, threads)
        result.update({"int8_onnx": str(q), "int8_test_acc": onnx_accuracy(qsess, test_pipe),
                       "int8_latency_ms_b1": measure_latency(qsess, shape)["median_ms"],
                       "int8_bytes": q.stat().st_size})
    (out_dir / "export.json").write_text(json.dumps(result, indent=2))
    return result


def api_accuracy(model: nn.Module, pipe) -> float:
    from edgedistill.train.trainer import evaluate

    return evaluate(model, pipe, torch.device("cpu"))["acc"]

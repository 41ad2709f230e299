import json

import numpy as np
import torch

from edgedistill import api
from edgedistill.config import TrainExperiment
from edgedistill.export.onnx import export_onnx, export_run, measure_latency, run_session, session
from edgedistill.models import create_model
from tests.conftest import tiny_train_config


def test_onnx_matches_torch_on_every_family(tmp_path):
    x = torch.randn(3, 1, 28, 28)
    for name in ("resnet8", "wrn_16_1", "mobilenetv2_tiny"):
        model = create_model(name, num_classes=10, in_channels=1).eval()
        path = export_onnx(model, (1, 1, 28, 28), tmp_path / f"{name}.onnx")
        out = run_session(session(path, threads=1), x.numpy())
        with torch.no_grad():
            ref = model(x).numpy()
        assert out.shape == (3, 10)  # dynamic batch
        assert np.abs(out - ref).max() < 1e-4, name


def test_latency_is_measured(tmp_path):
    model = create_model("resnet8", num_classes=10, in_channels=1)
    path = export_onnx(model, (1, 1, 28, 28), tmp_path / "m.onnx")
    lat = measure_latency(session(path, threads=1), (1, 1, 28, 28), warmup=1, repeats=5)
    assert 0 < lat["median_ms"] <= lat["p90_ms"]


def test_export_run_with_int8(tmp_path):
    cfg = TrainExperiment.model_validate(tiny_train_config(
        **{"train.epochs": 2, "data.limit_train": 1024, "data.limit_test": 256}))
    run = tmp_path / "run"
    api.train(cfg, run, progress=False)
    result = export_run(run, int8=True, limit_test=256, threads=1)
    assert result["max_abs_diff_vs_torch"] < 1e-4
    assert abs(result["onnx_test_acc"] - result["torch_test_acc"]) < 0.01
    # int8 keeps a trained model's predictions close: within 5 points on 256 images
    assert result["int8_test_acc"] > result["torch_test_acc"] - 0.05
    assert result["int8_bytes"] < result["onnx_bytes"]
    saved = json.loads((run / "export" / "export.json").read_text())
    assert saved["int8_onnx"].endswith("model.int8.onnx")

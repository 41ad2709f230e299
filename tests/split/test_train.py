"""HND training: a few steps lower the head's MSE on held-out images, the teacher never
changes, and a split run directory holds what serving and planning read."""

from __future__ import annotations

import json

import torch

from edgedistill import api
from edgedistill.config import validate
from edgedistill.config.split import SplitExperiment
from edgedistill.models import create_model
from edgedistill.split.bottleneck import BottleneckHead
from edgedistill.split.model import SplitModel, head_output_shape, load_split, read_meta
from edgedistill.split.train import HNDTask, KDTask, head_mse, load_split_data
from edgedistill.train.trainer import Trainer
from tests.split.conftest import tiny_split_config


def test_a_few_hnd_steps_lower_the_head_mse(tmp_path, teacher_file):
    cfg = validate(tiny_split_config(str(teacher_file), **{"train.epochs": 3}), SplitExperiment)
    train_data, test_data = load_split_data(cfg)
    pipes = api.build_pipelines(cfg.data, train_data, test_data, 0, torch.device("cpu"))
    teacher = api.load_model(teacher_file)
    before_teacher = {k: v.clone() for k, v in teacher.state_dict().items()}
    shape = head_output_shape(teacher, "layer1", (1, 16, 16))
    torch.manual_seed(0)
    model = SplitModel(teacher, "layer1", BottleneckHead((1, 16, 16), shape, 2, 8, 1),
                       keep=["layer2"])
    before = head_mse(model, pipes[1], torch.device("cpu"))
    task = HNDTask(model, ["layer2"], 0.5)
    summary = Trainer(task, *pipes, cfg, tmp_path / "hnd").fit()
    after = head_mse(model, pipes[1], torch.device("cpu"))
    assert after < 0.7 * before, (before, after)
    records = [json.loads(x) for x in (tmp_path / "hnd/metrics.jsonl").read_text().splitlines()]
    assert {"loss/hnd", "loss/ghnd/layer2"} <= set(records[0])
    assert summary["epochs_run"] == 3
    assert all(torch.equal(before_teacher[k], v) for k, v in teacher.state_dict().items())
    logits, losses = KDTask(model, 4.0, 1.0, 0.5)(next(iter(pipes[0].epoch(0))))
    assert set(losses) == {"kd", "ce"} and logits.shape[1] == 10


def test_run_directory_is_complete_and_reloads(split_run):
    meta = read_meta(split_run)
    assert meta["split_at"] == "layer1" and meta["chosen"] == "c2"
    assert set(meta["inputs"]) == {"raw", "png", "jpeg95", "jpeg75"}
    row = meta["bottlenecks"][0]
    assert row["bottleneck_shape"] == [2, 8, 8] and row["bytes_per_sample"] > 0
    for name in ("config.yaml", "table.md", "table.json", "summary.json", "c2/head.onnx",
                 "c2/model.safetensors", "c2/metrics.jsonl", "c2/checkpoints/last.pt"):
        assert (split_run / name).exists(), name
    record = json.loads((split_run / "c2/metrics.jsonl").read_text().splitlines()[-1])
    assert "test_head_mse" in record and "teacher_acc" in record
    model = load_split(split_run / "c2")
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), model.server_part()(model.device_part(x)))
    assert "| c2 (chosen) | 2x8x8 |" in (split_run / "table.md").read_text()


def test_resize_makes_the_upscaled_setting(teacher_file):
    cfg = validate(tiny_split_config(str(teacher_file), **{"input.size": 24,
                                                           "input.channels": 3}),
                   SplitExperiment)
    train_data, test_data = load_split_data(cfg)
    assert train_data.images.shape[1:] == (3, 24, 24) == test_data.images.shape[1:]
    assert train_data.images.dtype == torch.uint8
    assert torch.equal(train_data.images[:, 0], train_data.images[:, 2])
    assert train_data.mean == test_data.mean and len(train_data.mean) == 3


def test_a_torchvision_teacher_from_a_foreign_state_dict_is_split(tmp_path):
    """A teacher that is not edgedistill's own (torchvision's ResNet-18, its weights saved
    by DataParallel with a ``module.`` prefix) is named as a model in the split YAML."""
    from edgedistill.split.train import run_split_train

    torch.manual_seed(0)
    net = create_model("torchvision:resnet18", num_classes=10, in_channels=1)
    weights = tmp_path / "resnet18.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, weights)
    source = {"name": "torchvision:resnet18", "weights": str(weights)}
    cfg = validate(tiny_split_config(source), SplitExperiment)
    run_split_train(cfg, tmp_path / "run", progress=False)
    meta = json.loads((tmp_path / "run" / "split.json").read_text())
    assert meta["teacher_source"]["weights"] == str(weights)
    assert meta["teacher_spec"]["name"] == "torchvision:resnet18"
    assert meta["split_at"] == "layer1"

"""A map-style torch ``Dataset`` handed to ``edgedistill.distill`` / ``train`` streams
(``data.streaming: true``, or by itself over ``data.memory_budget_gb``, saying so), and
with the ``fit`` recipe the streamed run is the in-memory run, step for step."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import edgedistill
from edgedistill.config import DataConfig
from edgedistill.data.base import channel_stats
from edgedistill.data.streaming import StreamingData
from edgedistill.data.torch_dataset import stream_dataset, wants_streaming
from edgedistill.errors import UsageError
from edgedistill.library import _splits

TIMING = {"epoch_seconds", "images_per_s", "wall_seconds", "teacher_wait_s", "teacher_resent",
          "replica_restarts", "replicas", "cache_build_s"}


class Tinted(torch.utils.data.Dataset):
    """``n`` uint8 [channels, 16, 16] images: a class tint plus seeded noise."""

    def __init__(self, n: int = 96, channels: int = 3, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.targets = [i % 4 for i in range(n)]
        tint = torch.tensor(self.targets).view(-1, 1, 1, 1) * 40
        noise = torch.randint(0, 80, (n, channels, 16, 16), generator=gen)
        self.images = (tint + noise).clamp(0, 255).to(torch.uint8)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.targets[i]


def net(width: int, in_channels: int = 3) -> nn.Module:
    torch.manual_seed(width)
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 4))


def records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING} for x in lines]


def settings(**data) -> dict:
    return {"seed": 0, "train": {"threads": 1, "progress": False, "deterministic": True,
                                 "optimizer": {"name": "sgd", "lr": 0.05}},
            "data": {"workers": 2, "eval_batch_size": 32, "transform": "fit",
                     "augment": {"crop_pad": 2, "hflip": True}, **data}}


def test_a_dataset_over_the_budget_streams_through_distill_as_the_in_memory_run(
        tmp_path, capsys):
    data = Tinted()
    teacher, student = net(16), net(8)
    memory = edgedistill.distill(copy.deepcopy(teacher), copy.deepcopy(student), data,
                                 epochs=2, batch_size=16, out=tmp_path / "memory",
                                 **settings())
    assert "streaming it" not in capsys.readouterr().out
    mean, std = channel_stats(data.images)  # what the in-memory path normalizes with
    streamed = edgedistill.distill(copy.deepcopy(teacher), copy.deepcopy(student), data,
                                   epochs=2, batch_size=16, out=tmp_path / "streamed",
                                   **settings(memory_budget_gb=1e-5, mean=list(mean),
                                              std=list(std)))
    assert "data: Tinted would take 6.87e-05 GiB decoded in memory, over " \
           "data.memory_budget_gb=1e-05: streaming it with 2 workers instead" \
           in capsys.readouterr().out
    got, want = records(tmp_path / "streamed"), records(tmp_path / "memory")
    assert [r["epoch"] for r in got] == [0, 1] and got[0]["train_loss"] > 0
    assert got == want
    assert streamed["final_test_acc"] == memory["final_test_acc"]
    a = load_file(str(tmp_path / "streamed" / "model.safetensors"))
    b = load_file(str(tmp_path / "memory" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    start = student.state_dict()  # ``student`` itself was never trained: copies were
    assert not all(torch.equal(a[k], start[k]) for k in a if k in start)


def test_train_streams_a_grey_dataset_when_asked_keeping_one_channel(tmp_path, capsys):
    model = net(8, in_channels=1)
    summary = edgedistill.train(model, Tinted(64, channels=1), Tinted(32, 1, seed=1),
                                epochs=1, batch_size=16, out=tmp_path / "run",
                                **settings(streaming=True, transform="imagenet"))
    assert "streaming it" not in capsys.readouterr().out  # asked for, not decided
    assert [r["epoch"] for r in records(tmp_path / "run")] == [0]
    assert 0 <= summary["final_test_acc"] <= 1
    assert len(model(torch.zeros(1, 1, 16, 16))[0]) == 4


def test_streamed_splits_keep_size_channels_and_hold_out_a_tenth():
    cfg = DataConfig(dataset="python", streaming=True, val_split=8)

    class Run:
        data, seed = cfg, 0

    train, val, test = _splits(Run, Tinted(120, channels=1), None)
    assert all(isinstance(d, StreamingData) for d in (train, val, test))
    assert (len(train), len(val), len(test)) == (100, 8, 12)
    assert train.image_shape == test.image_shape == (1, 16, 16) and test.split == "test"
    assert len(set(train.rows.tolist()) | set(val.rows.tolist()) | set(test.rows.tolist())) \
        == 120
    assert train.augment == test.augment and not train.augment.active  # as in memory
    wide = torch.utils.data.TensorDataset(torch.zeros(8, 3, 10, 14, dtype=torch.uint8),
                                          torch.arange(8) % 2)
    rgb = stream_dataset(wide, "train", DataConfig(dataset="python"))
    assert rgb.image_shape == (3, 10, 10)  # the first image's shorter side
    assert rgb.labels.tolist() == [0, 1] * 4 and rgb.num_classes == 2


def test_the_budget_decides_only_when_streaming_is_unset():
    data, lines = Tinted(96), []
    tight = {"dataset": "python", "memory_budget_gb": 1e-5}
    assert wants_streaming(DataConfig(**tight), (data, None), lines.append)
    assert len(lines) == 1 and "streaming it with 2 workers" in lines[0]
    assert not wants_streaming(DataConfig(**tight, streaming=False), (data, None), lines.append)
    assert not wants_streaming(DataConfig(dataset="python"), (data, Tinted(8)), lines.append)
    assert wants_streaming(DataConfig(dataset="python", streaming=True), (data,), lines.append)
    assert len(lines) == 1


def test_a_dataset_over_the_budget_with_streaming_off_is_refused(tmp_path):
    with pytest.raises(UsageError, match=r"in-memory limit.*data\.streaming: true"):
        edgedistill.train(net(8), Tinted(96), epochs=1, out=tmp_path / "run",
                          **settings(streaming=False, memory_budget_gb=1e-5))



def test_the_teacher_cache_of_a_streamed_dataset_sees_a_changed_item(tmp_path):
    from edgedistill import api
    from edgedistill.distill.cache import CacheSource

    cfg = DataConfig(dataset="python", streaming=True, workers=0, transform="fit",
                     batch_size=16)
    data, teacher, lines = Tinted(40), net(8).eval(), []

    def attach():
        pipe = api.streaming_pipeline(cfg, stream_dataset(data, "train", cfg), True, 0, "cpu",
                                      num_draws=1)
        CacheSource(teacher, tmp_path, torch.device("cpu"), num_draws=1, precision="fp32",
                    log=lines.append, batch_size=16).attach([], pipe)
        return lines[-1]

    assert "built" in attach()
    assert attach().startswith("teacher cache: reusing")
    data.images[20, 0, 0, 0] ^= 1  # one pixel of the middle item, same length and labels
    assert "built" in attach()
    assert attach().startswith("teacher cache: reusing")


def test_evaluate_streams_a_dataset_when_asked_or_over_the_budget_as_in_memory(
        tmp_path, capsys):
    model, test = net(8), Tinted(48, seed=1)
    edgedistill.train(model, Tinted(96), epochs=2, batch_size=16, out=tmp_path / "run",
                      **settings())
    capsys.readouterr()
    memory = edgedistill.evaluate(model, test)  # in memory, the training set's statistics
    assert "streaming" not in capsys.readouterr().out
    asked = edgedistill.evaluate(model, test, data={"streaming": True, "transform": "fit"})
    assert "streaming it" not in capsys.readouterr().out  # asked for, not decided
    over = edgedistill.evaluate(model, test, **{"data.memory_budget_gb": 1e-6,
                                                "data.transform": "fit"})
    assert "data: Tinted would take 3.43e-05 GiB decoded in memory, over " \
           "data.memory_budget_gb=1e-06: streaming it with 2 workers instead" \
           in capsys.readouterr().out
    assert memory["images"] == asked["images"] == over["images"] == 48
    assert 0.25 < memory["acc"] and memory["acc"] == asked["acc"] == over["acc"]
    assert asked["loss"] == pytest.approx(memory["loss"], abs=1e-5)
    assert over["loss"] == pytest.approx(memory["loss"], abs=1e-5)
    with pytest.raises(UsageError, match="unknown key 'data.stream'"):
        edgedistill.evaluate(model, test, data={"stream": True})


FIXED = '''
from torch import nn


def fixed(num_classes=4, in_channels=3, side=8):
    """Takes side x side images only: any other size fails at the linear layer."""
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * side * side, num_classes))
'''


def test_a_run_trained_on_a_resized_stream_is_evaluated_and_exported_at_that_size(
        tmp_path, capsys):
    import yaml

    (tmp_path / "fixed_net.py").write_text(FIXED)
    test = Tinted(32, seed=1)
    summary = edgedistill.train({"factory": f"{tmp_path / 'fixed_net.py'}:fixed"}, Tinted(96),
                                test, epochs=1, batch_size=16, out=tmp_path / "run",
                                **settings(options={"image_size": 8}))
    assert "data: data.options.image_size=8 resizes Tinted's images, which only streaming " \
           "does: streaming it with 2 workers" in capsys.readouterr().out
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]
    assert saved["streaming"] is True and saved["options"] == {"image_size": 8}
    assert len(saved["mean"]) == len(saved["std"]) == 3
    scores = edgedistill.evaluate(str(tmp_path / "run"), test)  # 16 x 16 images, streamed at 8
    assert scores["images"] == 32 and scores["acc"] == pytest.approx(summary["final_test_acc"])
    assert scores["loss"] == pytest.approx(records(tmp_path / "run")[-1]["test_loss"], abs=1e-5)
    with pytest.raises(UsageError, match="trained on a Dataset streamed at 8 x 8; with "
                                         "data.streaming: false"):
        edgedistill.evaluate(str(tmp_path / "run"), test, data={"streaming": False})
    out = edgedistill.export(str(tmp_path / "run"), data=test, int8=True, out=tmp_path / "onnx")
    import onnx

    dims = onnx.load(out["onnx"]).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][1:] == [3, 8, 8]
    assert (tmp_path / "onnx" / "model.int8.onnx").stat().st_size > 0


def test_a_python_dataset_takes_image_size_and_names_any_other_option(tmp_path):
    with pytest.raises(UsageError, match=r"data.options \['size'\]: data given from Python as "
                                         "a Dataset takes only image_size"):
        edgedistill.train(net(8), Tinted(), epochs=1, out=tmp_path / "a",
                          data={"options": {"size": 8}})
    with pytest.raises(UsageError, match="image_size resizes a Dataset as it streams"):
        edgedistill.train(net(8), Tinted(), epochs=1, out=tmp_path / "b",
                          data={"options": {"image_size": 8}, "streaming": False})
    cfg = DataConfig(dataset="python", options={"image_size": 12})
    assert stream_dataset(Tinted(8), "train", cfg).image_shape == (3, 12, 12)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_run_trained_in_memory_evaluates_a_dataset_with_its_training_statistics(tmp_path):
    (tmp_path / "fixed_net.py").write_text(FIXED)
    train, test = Tinted(96), Tinted(32, seed=1)
    test.images = test.images // 2  # darker: its own statistics are not the training set's
    model = {"factory": f"{tmp_path / 'fixed_net.py'}:fixed", "kwargs": {"side": 16}}
    edgedistill.train(model, train, test, epochs=1, batch_size=16, out=tmp_path / "run",
                      **settings())
    scores = edgedistill.evaluate(str(tmp_path / "run"), test)
    assert scores["loss"] == pytest.approx(records(tmp_path / "run")[-1]["test_loss"], abs=1e-5)

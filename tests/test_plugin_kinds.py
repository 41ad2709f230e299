"""User plugins of the other kinds, each in a user's own .py file: a dataset, a model
family and a run logger are registered from ``plugins:``, validated at config load like
a built-in (a misspelt key and a wrong type refused, the plugin's keys listed), and used
together by a real ``edgedistill train`` run."""

from __future__ import annotations

import json

import pytest
import yaml

from edgedistill.config import TrainExperiment, validate
from edgedistill.errors import UsageError
from tests.conftest import run_cli

DATASET = '''
"""Stripes: horizontal (class 0) or vertical (class 1) bars, with noise."""
import torch

from edgedistill.data.base import DATASETS, AugmentSpec, make_splits


@DATASETS.register("{name}")
def load_stripes(root=None, seed=0, num_train: int = 64, num_test: int = 32,
                 image_size: int = 8, noise: float = 0.2):
    """Horizontal or vertical bars plus uniform noise, two classes."""
    gen = torch.Generator().manual_seed(seed)
    bars = (torch.arange(image_size) % 2).float()
    shapes = torch.stack([bars[:, None].expand(image_size, image_size),
                          bars[None, :].expand(image_size, image_size)])

    def split(n):
        labels = torch.arange(n) % 2
        pixels = (1 - noise) * shapes[labels] + noise * torch.rand(n, image_size, image_size,
                                                                   generator=gen)
        return (pixels[:, None] * 255).round().to(torch.uint8), labels

    return make_splits("{name}", ["horizontal", "vertical"], split(num_train), split(num_test),
                       AugmentSpec())
'''

MODEL = '''
"""A user's model family: one conv, global pooling, a linear head."""
from torch import nn

from edgedistill.models.zoo import Family, register_model


class TinyNet(nn.Sequential):
    def __init__(self, num_classes, in_channels, hidden):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(hidden, num_classes)
        self.stage_names, self.embedding_name, self.input_size = ["relu"], "flat", 8


@register_model("{name}", Family())
def tiny_net(num_classes: int = 10, in_channels: int = 1, hidden: int = 8):
    """One conv layer of ``hidden`` channels and a linear head."""
    return TinyNet(num_classes, in_channels, hidden)
'''

LOGGER = '''
"""A user's run logger: one line per epoch in a text file of the run directory."""
from edgedistill.config import LoggerConfig
from edgedistill.train.loggers import LOGGERS, RunLogger


class EpochLinesSettings(LoggerConfig):
    filename: str = "epochs.txt"
    digits: int = 4


@LOGGERS.register("{name}", settings=EpochLinesSettings)
class EpochLines(RunLogger):
    """Epoch and test accuracy, one line each, in ``filename``."""

    def on_epoch_end(self, trainer, record):
        with open(trainer.run_dir / self.settings.filename, "a") as fh:
            fh.write(f"{{record['epoch']}} {{record['test_acc']:.{{self.settings.digits}}f}}\\n")

    def on_train_end(self, trainer, summary):
        with open(trainer.run_dir / self.settings.filename, "a") as fh:
            fh.write(f"final {{summary['final_test_acc']:.{{self.settings.digits}}f}}\\n")
'''


@pytest.fixture
def plugins(tmp_path):
    """Three plugin files, their entries named after the test (one process registers
    each name once), and a config that uses all three."""
    names = {kind: f"{kind}_{tmp_path.name}" for kind in ("stripes", "tinynet", "lines")}
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "my_data.py").write_text(DATASET.format(name=names["stripes"]))
    (folder / "my_models.py").write_text(MODEL.format(name=names["tinynet"]))
    (folder / "my_loggers.py").write_text(LOGGER.format(name=names["lines"]))
    raw = {"name": "plugged", "seed": 0,
           "plugins": [str(folder / f) for f in ("my_data.py", "my_models.py", "my_loggers.py")],
           "data": {"dataset": names["stripes"], "batch_size": 16, "eval_batch_size": 32,
                    "options": {"num_train": 64, "num_test": 32, "image_size": 8}},
           "model": {"name": names["tinynet"], "kwargs": {"hidden": 6}},
           "loggers": [{"name": names["lines"], "filename": "mine.txt", "digits": 3}],
           "train": {"epochs": 6, "threads": 1, "progress": False,
                     "optimizer": {"name": "adam", "lr": 0.05, "weight_decay": 0.0}}}
    return names, raw, folder


def assert_refused(raw: dict, *needles: str) -> None:
    with pytest.raises(UsageError) as err:
        validate(raw, TrainExperiment)
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))


def test_plugin_dataset_model_and_logger_validate_at_load(plugins):
    names, raw, _ = plugins
    cfg = validate(raw, TrainExperiment)
    assert cfg.data.dataset == names["stripes"] and cfg.data.options["image_size"] == 8
    assert cfg.model.kwargs == {"hidden": 6}
    assert (cfg.loggers[0].filename, cfg.loggers[0].digits) == ("mine.txt", 3)
    from edgedistill.data import DATASETS
    from edgedistill.models import MODELS
    from edgedistill.train.loggers import LOGGERS

    for registry, name, file in ((DATASETS, names["stripes"], "my_data"),
                                 (MODELS, names["tinynet"], "my_models"),
                                 (LOGGERS, names["lines"], "my_loggers")):
        assert name in registry and registry.origin(name).endswith(file)

    data = raw["data"]
    assert_refused({**raw, "data": {**data, "options": {"num_trian": 64}}},
            f"unknown data.options key 'num_trian' for dataset '{names['stripes']}'",
            "allowed: image_size, noise, num_test, num_train")
    assert_refused({**raw, "data": {**data, "options": {"noise": "loud"}}},
            "data.options.noise", "'loud'", "float")
    assert_refused({**raw, "model": {"name": names["tinynet"], "kwargs": {"hiden": 4}}},
            f"unknown kwargs key 'hiden' for model '{names['tinynet']}'",
            "allowed: hidden, in_channels, num_classes")
    assert_refused({**raw, "model": {"name": names["tinynet"], "kwargs": {"hidden": "four"}}},
            "kwargs.hidden", "'four'")
    assert_refused({**raw, "loggers": [{"name": names["lines"], "file": "x.txt"}]},
            "unknown loggers[0] key 'file'", "allowed: digits, filename, name")
    assert_refused({**raw, "loggers": [{"name": names["lines"], "digits": "many"}]}, "digits")


def test_without_the_plugins_the_names_are_unknown(plugins):
    names, raw, _ = plugins
    raw = {**raw, "plugins": [], "loggers": []}
    assert_refused(raw, f"unknown dataset '{names['stripes']}'", "(or add yours under plugins:)",
            f"unknown model '{names['tinynet']}'")


def test_a_real_run_trains_on_the_plugin_dataset_and_model_and_logs_through_the_plugin(
        plugins, tmp_path):
    names, raw, folder = plugins
    cfg = folder / "plugged.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    out = tmp_path / "run"
    result = run_cli("train", str(cfg), "--out", str(out))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(6))
    lines = (out / "mine.txt").read_text().splitlines()
    assert lines == [f"{r['epoch']} {r['test_acc']:.3f}" for r in records] + [
        f"final {records[-1]['test_acc']:.3f}"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_test_acc"] == records[-1]["test_acc"] >= 0.9  # it learnt the bars
    assert summary["spec"] == {"name": names["tinynet"], "num_classes": 2, "in_channels": 1,
                               "hidden": 6}
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["dataset"] == names["stripes"]
    assert saved["model"] == {**saved["model"], "name": names["tinynet"],
                              "kwargs": {"hidden": 6}}
    exported = run_cli("export", str(out))  # reads the run: its plugins are imported
    assert exported.returncode == 0, exported.stderr
    report = json.loads((out / "export" / "export.json").read_text())
    assert report["torch_test_acc"] == summary["final_test_acc"]
    assert report["max_abs_diff_vs_torch"] < 1e-4

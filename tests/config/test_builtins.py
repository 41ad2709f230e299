"""Datasets and zoo models are checked at config load like the other registry kinds: the
built-ins read from their files (no torch) give exactly the settings their imported
functions' signatures give, and an unknown name, a misspelt option or a value of the
wrong type is refused with the key named, through the CLI with exit status 2, fast."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import yaml

from edgedistill.config import DataConfig, ModelConfig, StudentConfig, TrainExperiment, validate
from edgedistill.config.builtins import UNREAD, datasets, models
from edgedistill.errors import UsageError
from edgedistill.registry import settings_from_signature
from tests.conftest import timed_cli

DATASETS_READ = sorted(datasets()["memory"])
STREAMED_READ = sorted(datasets()["streaming"])
MODELS_READ = sorted(models())


def registries():
    from edgedistill.data import DATASETS
    from edgedistill.data.stream_sources import STREAM_SOURCES
    from edgedistill.models import MODELS

    return {"memory": DATASETS, "streaming": STREAM_SOURCES, "models": MODELS}


def builtin_names(registry) -> set[str]:
    return {n for n in registry.names() if registry.origin(n).startswith("edgedistill.")}


def fields(params: tuple[inspect.Parameter, ...] | list[inspect.Parameter]) -> dict:
    """Name -> (annotation, default or UNREAD): what the settings model is made of."""
    return {p.name: (p.annotation, p.default) for p in params}


def test_every_registered_builtin_is_read_from_its_file():
    regs = registries()
    assert builtin_names(regs["memory"]) == set(DATASETS_READ)
    assert builtin_names(regs["streaming"]) == set(STREAMED_READ)
    assert builtin_names(regs["models"]) == set(MODELS_READ)
    assert all(regs["models"].origin(n) == models()[n].module for n in MODELS_READ)


@pytest.mark.parametrize("kind,name", [*(("memory", n) for n in DATASETS_READ),
                                       *(("streaming", n) for n in STREAMED_READ),
                                       *(("models", n) for n in MODELS_READ)])
def test_read_signature_equals_the_imported_one(kind, name):
    entry = models()[name] if kind == "models" else datasets()[kind][name]
    assert entry.params is not None, f"{entry.module}: the reader cannot follow {name}"
    real = inspect.signature(registries()[kind].get(name), eval_str=True).parameters.values()
    read, want = fields(entry.params), fields(list(real))
    assert read.keys() == want.keys()
    for key, (annotation, default) in read.items():
        assert annotation == want[key][0], (key, annotation, want[key][0])
        assert default in (want[key][1], UNREAD), (key, default, want[key][1])
        assert (default is inspect.Parameter.empty) == (want[key][1] is inspect.Parameter.empty)
    skip = ("root", "seed") if kind != "models" else ()
    imported = settings_from_signature(registries()[kind].get(name), skip, title=name)
    assert set(imported.model_fields) == {k for k in read if k not in skip}


def test_checking_every_builtin_does_not_import_torch():
    code = ("import sys\n"
            "from edgedistill.config import DataConfig, ModelConfig\n"
            "from edgedistill.config.builtins import datasets, models\n"
            "for n in datasets()['memory']: DataConfig(dataset=n, options={})\n"
            "for n in datasets()['streaming']: DataConfig(dataset=n, streaming=True)\n"
            "for n in models(): ModelConfig(name=n, kwargs={'num_classes': 3})\n"
            "DataConfig(dataset='synthetic', options={'num_train': '64', 'noise': 0.1})\n"
            "assert len(models()) > 15 and 'torch' not in sys.modules, sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_options_and_kwargs_come_back_converted():
    assert DataConfig(dataset="synthetic", options={"num_train": "64"}).options == {
        "num_train": 64}
    assert ModelConfig(name="resnet8", kwargs={"width": "0.5"}).kwargs == {"width": 0.5}
    assert StudentConfig(name="wrn_16_1", kwargs={"depth": 10}).kwargs == {"depth": 10}


@pytest.mark.parametrize("data,needles", [
    ({"dataset": "nope"}, ["unknown dataset 'nope'", "synthetic", "fashion_mnist"]),
    ({"dataset": "synthetic", "options": {"foo": 1}},
     ["unknown data.options key 'foo' for dataset 'synthetic'", "allowed: channels"]),
    ({"dataset": "synthetic", "options": {"num_train": "many"}},
     ["data.options.num_train", "'many'", "int"]),
    ({"dataset": "synthetic", "options": {"noise": float("nan")}},
     ["data.options.noise", "finite"]),
    ({"dataset": "fashion_mnist", "options": {"seed": 3}}, ["unknown data.options key 'seed'"]),
    ({"dataset": "webdataset", "options": {"image_sise": 64}},
     ["unknown data.options key 'image_sise' for dataset 'webdataset'"]),
])
def test_a_bad_dataset_entry_is_refused_at_load(data, needles):
    with pytest.raises(UsageError) as err:
        validate({"model": {"name": "resnet8"}, "data": data}, TrainExperiment)
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))


@pytest.mark.parametrize("model,needles", [
    ({"name": "resnet9"}, ["unknown model 'resnet9'", "resnet8", "torchvision:NAME"]),
    ({"name": "resnet8", "kwargs": {"depthh": 3}},
     ["model: ", "unknown kwargs key 'depthh' for model 'resnet8'", "allowed: blocks"]),
    ({"name": "resnet8", "kwargs": {"width": "wide"}}, ["kwargs.width", "'wide'", "float"]),
    ({"name": "resnet18", "kwargs": {"blocks": [2, "x", 2, 2]}}, ["kwargs.blocks"]),
])
def test_a_bad_model_entry_is_refused_at_load(model, needles):
    with pytest.raises(UsageError) as err:
        validate({"model": model, "data": {"dataset": "synthetic"}}, TrainExperiment)
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))


def test_foreign_and_python_entries_are_left_to_their_builders():
    assert ModelConfig(name="torchvision:resnet18", kwargs={"anything": 1}).kwargs == {
        "anything": 1}
    assert DataConfig(dataset="python").dataset == "python"
    assert DataConfig(dataset="python", options={"image_size": 8}).options == {"image_size": 8}
    with pytest.raises(ValueError, match=r"data.options \['num_train'\]: .* takes only "
                                         "image_size"):
        DataConfig(dataset="python", options={"num_train": 3, "image_size": 8})
    with pytest.raises(ValueError, match="data.options.image_size: an integer >= 1"):
        DataConfig(dataset="python", options={"image_size": 0})
    with pytest.raises(ValueError, match="with data.streaming: false it is held in memory"):
        DataConfig(dataset="python", options={"image_size": 8}, streaming=False)


@pytest.mark.parametrize("over,needle", [
    ({"data": {"dataset": "fashion_mnst"}}, "unknown dataset 'fashion_mnst'"),
    ({"data": {"dataset": "fashion_mnist", "options": {"limit": 3}}},
     "unknown data.options key 'limit' for dataset 'fashion_mnist'; allowed: (none)"),
    ({"model": {"name": "resnet8", "kwargs": {"width": "wide"}}},
     "model: Value error, kwargs.width"),
])
def test_the_cli_exits_2_fast_without_torch_or_the_data(tmp_path, over, needle):
    """Through the real command: one error line naming the key, no traceback, the data
    root never read, nothing written, torch never imported, under 2 s of CPU."""
    root = tmp_path / "no_dataset_here"
    raw = {"name": "bad", "model": {"name": "resnet8"},
           "train": {"epochs": 1, "progress": False}, **over}
    raw["data"] = {**raw.get("data", {"dataset": "fashion_mnist"}), "root": str(root)}
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    refused_fast(["train", str(cfg), "--out", str(tmp_path / "run")], needle)
    assert not root.exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("command,raw", [
    (["study"], {"teacher": {"source": "zoo:resnet20-fashion_mnist"},
                 "students": [{"name": "resnet8", "kwargs": {"depthh": 3}}]}),
    (["split", "train"], {"teacher": {"source": "zoo:resnet20-fashion_mnist"},
                          "data": {"dataset": "fashion_mnist", "options": {"limit": 3}}}),
])
def test_study_and_split_refuse_a_typo_before_torch(tmp_path, command, raw):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    refused_fast([*command, str(cfg), "--out", str(tmp_path / "run")],
                 "unknown data.options key 'limit'" if "split" in command
                 else "unknown kwargs key 'depthh' for model 'resnet8'")
    assert not (tmp_path / "run").exists()


def refused_fast(args: list[str], needle: str) -> None:
    """The command exits 2 with one line holding ``needle``, no traceback, torch never
    imported, under 2 s of CPU."""
    run = timed_cli(*args)
    result, errors = run.result, run.errors
    assert result.returncode == 2, result.stderr
    assert len(errors) == 1 and needle in errors[0] and "Traceback" not in result.stderr, errors
    assert "edgedistill.config.builtins" in run.imported and "torch" not in run.imported
    assert run.cpu < 2.0, f"{run.cpu:.2f} s CPU ({run.wall:.2f} s wall)"

"""Bad input through the real command: exit status 2, at most 5 lines on stderr that
name the key, value or file and the fix, no traceback, and no file in a fresh --out.

A few go through ``python -m edgedistill.cli`` in a subprocess; the rest run the same
``run_cli`` wrapper in this process (seconds instead of a torch import each)."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import run_cli, set_dotted

DATA = {"dataset": "synthetic", "batch_size": 32, "eval_batch_size": 64,
        "options": {"num_train": 64, "num_test": 32, "image_size": 8, "channels": 1}}


def tiny_config(**over) -> dict:
    cfg = {"name": "tiny", "seed": 0, "data": yaml.safe_load(yaml.safe_dump(DATA)),
           "model": {"name": "resnet8"},
           "train": {"epochs": 1, "threads": 1, "progress": False}}
    return set_dotted(cfg, over)


def write(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(capsys, *args: str) -> tuple[int, str]:
    """The main command in this process: (exit status, stderr)."""
    from edgedistill.cli import app
    from edgedistill.errors import run_cli as wrapper

    with pytest.raises(SystemExit) as stop:
        wrapper(app, [str(a) for a in args])
    return stop.value.code or 0, capsys.readouterr().err


def assert_usage_error(code: int, stderr: str, *needles: str) -> None:
    assert code == 2, (code, stderr)
    assert "Traceback" not in stderr and "Aborted" not in stderr, stderr
    assert 1 <= len(stderr.strip().splitlines()) <= 5, stderr
    for needle in needles:
        assert needle in stderr, (needle, stderr)


# ---- files that are not what they should be -------------------------------------------

def test_binary_config_file(tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_bytes(bytes(range(128, 256)) * 4)
    result = run_cli("train", str(config), "--out", str(tmp_path / "run"))
    assert_usage_error(result.returncode, result.stderr, str(config), "not UTF-8")
    assert not (tmp_path / "run").exists()


def test_broken_yaml_in_set_value(tmp_path):
    config = write(tmp_path / "cfg.yaml", tiny_config())
    result = run_cli("train", str(config), "--set", "train.epochs=[1",
                     "--out", str(tmp_path / "run"))
    assert_usage_error(result.returncode, result.stderr, "train.epochs=[1", "not valid YAML")
    assert not (tmp_path / "run").exists()


def test_yaml_syntax_error_names_file_and_line(tmp_path, capsys):
    config = tmp_path / "cfg.yaml"
    config.write_text("name: x\ndata: [1\nmodel: {}\n")
    assert_usage_error(*cli(capsys, "train", config), str(config), "line 3")


def test_config_that_is_a_directory(tmp_path, capsys):
    assert_usage_error(*cli(capsys, "train", tmp_path), "is a directory")


# ---- values ----------------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [("train.optimizer.lr", ".inf"),
                                        ("train.schedule.gamma", ".nan"),
                                        ("train.optimizer.betas", "[0.9, .inf]")])
def test_non_finite_floats_are_refused(tmp_path, capsys, key, value):
    config = write(tmp_path / "cfg.yaml", tiny_config())
    out = tmp_path / "run"
    assert_usage_error(*cli(capsys, "train", config, "--set", f"{key}={value}", "--out", out),
                       key, "finite")
    assert not out.exists()


def test_dataset_option_of_the_wrong_type(tmp_path, capsys):
    config = write(tmp_path / "cfg.yaml", tiny_config(**{"data.options.num_train": "many"}))
    out = tmp_path / "run"
    assert_usage_error(*cli(capsys, "train", config, "--out", out),
                       "data.options.num_train", "'many'", "int")
    assert not out.exists()


# ---- --out -----------------------------------------------------------------------------

def test_out_that_is_a_file(tmp_path, capsys):
    config = write(tmp_path / "cfg.yaml", tiny_config())
    taken = tmp_path / "taken"
    taken.write_text("mine")
    assert_usage_error(*cli(capsys, "train", config, "--out", taken), str(taken), "a file")
    assert_usage_error(*cli(capsys, "train", config, "--out", taken / "run"), "a file")
    assert taken.read_text() == "mine"


def test_out_where_this_user_cannot_write(tmp_path, capsys):
    if not Path("/proc/1").is_dir() or os.access("/proc/1", os.W_OK):
        pytest.skip("needs Linux's /proc")
    config = write(tmp_path / "cfg.yaml", tiny_config())
    assert_usage_error(*cli(capsys, "train", config, "--out", "/proc/1/run"),
                       "/proc/1", "choose another --out")


@pytest.fixture
def read_only_dir(tmp_path):
    """A real read-only file system: a tmpfs mounted ``ro`` (needs root and mount)."""
    target = tmp_path / "ro"
    target.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a read-only tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs",
                              str(target)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount here: {mounted.stderr.decode().strip()}")
    yield target
    subprocess.run(["umount", str(target)], check=True)


def test_out_on_a_read_only_file_system(tmp_path, capsys, read_only_dir):
    config = write(tmp_path / "cfg.yaml", tiny_config())
    assert_usage_error(*cli(capsys, "train", config, "--out", read_only_dir / "run"),
                       str(read_only_dir), "read-only", "choose another --out")


# ---- data files ------------------------------------------------------------------------

def test_missing_dataset_is_short_and_names_the_fix(tmp_path, capsys):
    config = write(tmp_path / "cfg.yaml", tiny_config(data={"dataset": "cifar10",
                                                             "root": str(tmp_path / "none")}))
    out = tmp_path / "run"
    assert_usage_error(*cli(capsys, "train", config, "--out", out),
                       "cifar10", str(tmp_path / "none"), "data.root")
    assert not out.exists()


def test_truncated_gz_dataset_file_is_named(tmp_path):
    from edgedistill.data.fashion_mnist import FILES

    rng = np.random.default_rng(0)
    shapes = {"train_images": (40, 28, 28), "train_labels": (40,),
              "test_images": (20, 28, 28), "test_labels": (20,)}
    for key, stem in FILES.items():
        array = rng.integers(0, 10 if key.endswith("labels") else 256, shapes[key])
        header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
        (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(header + array.astype(
            np.uint8).tobytes()))
    damaged = tmp_path / f"{FILES['train_images']}.gz"
    damaged.write_bytes(damaged.read_bytes()[:-200])
    config = write(tmp_path / "cfg.yaml", tiny_config(data={"dataset": "fashion_mnist",
                                                             "root": str(tmp_path)}))
    result = run_cli("train", str(config), "--out", str(tmp_path / "run"))
    assert_usage_error(result.returncode, result.stderr, str(damaged), "truncated",
                       "fetch it again")
    assert not (tmp_path / "run").exists()


# ---- design --train --------------------------------------------------------------------

@pytest.mark.parametrize("text, needle", [("train: {epochs: [1}\n", "not valid YAML"),
                                          ("train: {epochz: 1}\n", "train.epochz")])
def test_design_train_config_is_checked_before_anything_is_written(tmp_path, capsys, text,
                                                                  needle):
    config = tmp_path / "kd.yaml"
    config.write_text(text)
    out = tmp_path / "design"
    assert_usage_error(*cli(capsys, "design", "--teacher", "zoo:resnet20-fashion_mnist",
                            "--storage", "400kB", "--measure", "0", "--train",
                            "--config", config, "--out", out), str(config), needle)
    assert not out.exists()


def test_design_set_value_is_checked_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "design"
    assert_usage_error(*cli(capsys, "design", "--teacher", "zoo:resnet20-fashion_mnist",
                            "--storage", "400kB", "--measure", "0", "--train",
                            "--set", "train.optimizer.lr=.inf", "--out", out),
                       "train.optimizer.lr", "finite")
    assert not out.exists()


def float_keys(schema, prefix: str = "") -> list[str]:
    """Every float field of a schema tree, as dotted keys (lists of models: item 0)."""
    from typing import get_args

    from pydantic import BaseModel

    keys = []
    for name, field in schema.model_fields.items():
        kinds = [field.annotation, *get_args(field.annotation)]
        kinds += [a for k in kinds for a in get_args(k)]
        model = next((k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)), None)
        if model is not None:
            is_list = "list" in str(field.annotation)
            keys += float_keys(model, f"{prefix}{name}.{'0.' if is_list else ''}")
        elif float in kinds:
            keys.append(f"{prefix}{name}")
    return keys


def test_every_float_field_of_every_experiment_refuses_inf():
    from edgedistill.config import DistillExperiment, TrainExperiment, validate
    from edgedistill.errors import UsageError

    rules = [{"kind": "plateau"}]
    train = {**tiny_config(), "halting": rules}
    distill = {"teacher": {"source": "zoo:x"}, "student": {"name": "resnet8"},
               "halting": rules, "losses": [{"name": "kd"}]}
    checked = 0
    for schema, raw in ((TrainExperiment, train), (DistillExperiment, distill)):
        for key in float_keys(schema):
            bad = yaml.safe_load(yaml.safe_dump(raw))
            node = bad
            *parents, last = key.split(".")
            for i, part in enumerate(parents):
                item = i + 1 < len(parents) and parents[i + 1].isdigit()  # a list of models
                node = node[int(part)] if part.isdigit() else node.setdefault(
                    part, [{}] if item else {})
            node[last] = float("inf")
            with pytest.raises(UsageError, match=key.replace(".", r"\.")):
                validate(bad, schema)
            checked += 1
    assert checked > 20  # the walk found the fields (lr, gamma, pool replicas, ...)

"""Run directories under bad input: resuming from a damaged or foreign checkpoint, a disk
that fills during a write, nothing half-written by a failed command, and commands that
read a run (eval, export, design) using the run's own resolved config."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from edgedistill import api
from tests.cli.test_bad_input import assert_usage_error, cli, tiny_config, write
from tests.split.conftest import teacher_file, tiny_split_config  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished 1-epoch run on synthetic data, copied by tests that damage it."""
    from edgedistill.config import TrainExperiment, validate

    root = tmp_path_factory.mktemp("trained")
    cfg = write(root / "cfg.yaml", tiny_config())
    api.train(validate(tiny_config(), TrainExperiment), root / "run", progress=False)
    return cfg, root / "run"


@pytest.fixture
def run_copy(trained, tmp_path):
    cfg, run = trained
    shutil.copytree(run, tmp_path / "run")
    return cfg, tmp_path / "run"


def test_resume_from_an_empty_checkpoint(run_copy, capsys):
    cfg, run = run_copy
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    assert_usage_error(*cli(capsys, "train", cfg, "--out", run, "--resume"),
                       "last.pt", "empty", "delete it")


def test_resume_with_another_architecture(run_copy, capsys):
    cfg, run = run_copy
    assert_usage_error(*cli(capsys, "train", cfg, "--out", run, "--resume",
                            "--set", "model.name=resnet20"),
                       "last.pt", "written for resnet8", "resnet20", "new --out")


def test_resume_removes_temp_files_of_a_killed_checkpoint_write(run_copy, capsys):
    cfg, run = run_copy
    stale = run / "checkpoints" / ".last.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    code, err = cli(capsys, "train", cfg, "--out", run, "--resume", "--set", "train.epochs=2")
    assert code == 0, err
    assert not stale.exists()
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 2


def test_disk_full_during_training_names_the_path(tmp_path, capsys, fill_disk):
    """ENOSPC from the kernel: every atomic write's temp file is a link to /dev/full."""
    fill_disk()
    cfg = write(tmp_path / "cfg.yaml", tiny_config())
    out = tmp_path / "run"
    assert_usage_error(*cli(capsys, "train", cfg, "--out", out), str(out), "no space left")
    assert not list(out.rglob("*.tmp"))


# ---- nothing half-written ----------------------------------------------------------------

def test_failed_train_and_distill_leave_no_run_dir(tmp_path, capsys, trained):
    cfg = write(tmp_path / "bad.yaml", tiny_config(**{"model.name": "resnet9000"}))
    out = tmp_path / "fresh" / "run"
    assert_usage_error(*cli(capsys, "train", cfg, "--out", out), "resnet9000")
    kd = write(tmp_path / "kd.yaml", {
        "name": "kd", "data": tiny_config()["data"], "train": tiny_config()["train"],
        "teacher": {"source": str(trained[1])},
        "student": {"name": "resnet8"},
        "losses": [{"name": "fitnet", "student_layers": ["no.such.layer"],
                    "teacher_layers": ["layer1"]}]})
    assert_usage_error(*cli(capsys, "distill", kd, "--out", out), "no.such.layer")
    assert not (tmp_path / "fresh").exists()


def test_bad_split_point_leaves_no_run_dir(tmp_path, capsys, teacher_file):  # noqa: F811
    cfg = write(tmp_path / "split.yaml",
                tiny_split_config(str(teacher_file), **{"teacher.split_at": "layer9"}))
    out = tmp_path / "run"
    assert_usage_error(*cli(capsys, "split", "train", cfg, "--out", out), "layer9")
    assert not out.exists()


# ---- commands that read a run use its resolved config ------------------------------------

def image_folder(root, size=12):
    for split, count in (("train", 6), ("val", 2)):
        for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (size + i, size), colour).save(folder / f"{i}.png")
    return root


def test_eval_and_design_read_an_imagefolder_run_with_its_root_and_options(tmp_path, capsys):
    images = image_folder(tmp_path / "images")
    data = {"dataset": "imagefolder", "root": str(images), "options": {"image_size": 8},
            "batch_size": 4, "eval_batch_size": 3}
    cfg = write(tmp_path / "cfg.yaml", tiny_config(data=data))
    run = tmp_path / "run"
    code, err = cli(capsys, "train", cfg, "--out", run)
    assert code == 0, err
    for source in (run, run / "model.safetensors", run / "checkpoints" / "last.pt"):
        data_cfg = api.source_data_config(str(source))
        assert (data_cfg.root, data_cfg.options, data_cfg.eval_batch_size) == (
            str(images), {"image_size": 8}, 3)
    code, err = cli(capsys, "eval", run)
    assert code == 0, err
    from edgedistill.report.evaluation import evaluate_source

    assert evaluate_source(str(run))["test_images"] == 4
    from edgedistill.design.run import dataset_shape, teacher_data

    assert dataset_shape(teacher_data(str(run), None)) == (3, 8, 8)


def test_eval_of_a_run_with_a_damaged_config(run_copy, capsys):
    _, run = run_copy
    (run / "config.yaml").write_bytes(b"\xff\xfe\x00binary")
    assert_usage_error(*cli(capsys, "eval", run), str(run / "config.yaml"), "not UTF-8")

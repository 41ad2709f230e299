"""``edgedistill check``: validates, builds the models, prints the plan; reads one batch
of data that exists and names data that does not; exit 2 on an invalid config."""

from __future__ import annotations

import pytest
import yaml

from edgedistill.check import check
from edgedistill.errors import UsageError
from tests.conftest import run_cli
from tests.data.conftest import write_jpeg_folder


def streaming_distill(root, teacher: str = "zoo:resnet20-fashion_mnist") -> dict:
    return {"name": "c", "data": {"dataset": "imagefolder", "root": str(root),
                                  "options": {"image_size": 32}, "streaming": True,
                                  "batch_size": 16, "num_classes": 4},
            "teacher": {"source": {"name": "resnet20", "kwargs": {"num_classes": 4}}},
            "student": {"name": "resnet8"},
            "losses": [{"name": "ce", "weight": 1.0}, {"name": "at",
                                                       "student_layers": ["stage2"],
                                                       "teacher_layers": ["stage2"]}]}


def test_check_reads_one_batch_and_prints_the_plan(tmp_path):
    folder = write_jpeg_folder(tmp_path / "jpegs", n_train=40, n_val=8)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(streaming_distill(folder)))
    lines = check(path)
    text = "\n".join(lines)
    assert "data: imagefolder (streaming, 2 workers, transform imagenet), input 3x32x32, " \
           "4 classes" in text
    assert "train 40, test 8 images; 2 steps per epoch" in text
    assert "read one batch: (16, 3, 32, 32)" in text
    assert any(line.startswith("teacher: resnet20, 0.27") for line in lines)
    assert any(line.startswith("student: resnet8, 0.07") for line in lines)


def test_missing_data_is_named_with_how_to_get_it_and_models_still_build(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(streaming_distill(tmp_path / "nowhere")))
    text = "\n".join(check(path))
    assert f"MISSING: an image folder (train/<class>/*.png|jpg) not found; searched " \
           f"{tmp_path / 'nowhere'}" in text
    assert "To get it: arrange images as <folder>/train/<class>/" in text
    assert "input 3x32x32, 4 classes" in text and "student: resnet8" in text


def test_a_teacher_trained_by_a_config_beside_it_is_named(tmp_path):
    cfg = streaming_distill(tmp_path / "nowhere")
    cfg["teacher"] = {"source": "runs/my_teacher"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "teacher.yaml").write_text(yaml.safe_dump(
        {"name": "my_teacher", "data": cfg["data"], "model": {"name": "resnet20"}}))
    text = "\n".join(check(tmp_path / "c.yaml"))
    assert "teacher: resnet20" in text
    assert (f"runs/my_teacher is not trained yet; make it with `edgedistill train "
            f"{tmp_path / 'teacher.yaml'} --out runs/my_teacher`") in text


def test_a_loss_layer_that_does_not_exist_is_refused(tmp_path):
    cfg = streaming_distill(tmp_path / "nowhere")
    cfg["losses"][1]["student_layers"] = ["stage9"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(UsageError, match="losses: .*stage9"):
        check(tmp_path / "c.yaml")


def test_the_command_exits_2_on_an_invalid_config_and_0_on_a_valid_one(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**streaming_distill(tmp_path), "data": {"workers": -1}}))
    result = run_cli("check", str(bad))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "workers" in result.stderr and len(result.stderr.strip().splitlines()) <= 5
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(streaming_distill(tmp_path / "nowhere")))
    result = run_cli("check", str(good))
    assert result.returncode == 0, result.stderr
    assert "MISSING: an image folder" in result.stdout and "student: resnet8" in result.stdout

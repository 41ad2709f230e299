"""Teacher provenance: every distillation run records where its teacher came from, and a
teacher snapshot taken before the end of its own schedule is refused unless allowed."""

import json
import signal
import subprocess
import time

import pytest

from edgedistill.config import DistillExperiment
from edgedistill.config.study import StudyConfig
from edgedistill.distill.provenance import describe, require_finished, teacher_provenance
from edgedistill.distill.run import run_distill
from edgedistill.errors import UsageError
from edgedistill.study.findings import header_lines
from tests.conftest import CLI, tiny_train_config
from tests.distill.conftest import distill_config


@pytest.fixture(scope="module")
def killed_teacher(tmp_path_factory):
    """A real teacher run killed with SIGKILL after its first of three epochs."""
    import yaml

    root = tmp_path_factory.mktemp("killed")
    cfg = root / "teacher.yaml"
    cfg.write_text(yaml.safe_dump(tiny_train_config(**{"train.epochs": 3})))
    run = root / "run"
    proc = subprocess.Popen([*CLI, "train", str(cfg), "--out", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            metrics = run / "metrics.jsonl"
            if metrics.exists() and metrics.read_text().count("\n") >= 1 \
                    and (run / "model.safetensors").exists():
                break
            assert proc.poll() is None, "the teacher run ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("the teacher run wrote no epoch in 240 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert not (run / "summary.json").exists()
    return run


def test_zoo_entries_state_how_much_of_their_schedule_they_trained():
    r20 = teacher_provenance("zoo:resnet20-fashion_mnist")
    assert (r20["kind"], r20["epochs_trained"], r20["epochs_planned"], r20["finished"]) == (
        "zoo", 15, 15, True)
    r56 = teacher_provenance("zoo:resnet56-fashion_mnist")
    assert (r56["epochs_trained"], r56["epochs_planned"], r56["finished"]) == (5, 30, False)
    assert "5/30 planned epochs, UNFINISHED" in describe(r56)
    with pytest.raises(UsageError, match="allow_unfinished"):
        require_finished(r56, allow_unfinished=False)
    require_finished(r56, allow_unfinished=True)


def test_finished_run_is_recorded_in_the_student_run(tiny_teacher, tmp_path):
    cfg = DistillExperiment.model_validate(distill_config(tiny_teacher, **{"train.epochs": 1}))
    summary = run_distill(cfg, tmp_path / "run", progress=False)
    prov = summary["teacher_provenance"]
    assert prov["kind"] == "run" and prov["finished"] is True
    assert (prov["epochs_trained"], prov["epochs_planned"]) == (2, 2)
    assert prov["test_acc"] == json.loads(
        (tiny_teacher.parent / "summary.json").read_text())["final_test_acc"]


def test_killed_teacher_is_refused_before_anything_is_written(killed_teacher, tmp_path):
    prov = teacher_provenance(killed_teacher)
    assert (prov["epochs_trained"], prov["epochs_planned"], prov["finished"]) == (1, 3, False)
    # the weights file inside the run, and the checkpoint, lead to the same record
    assert teacher_provenance(killed_teacher / "model.safetensors")["finished"] is False
    assert teacher_provenance(killed_teacher / "checkpoints" / "last.pt")["finished"] is False
    cfg = DistillExperiment.model_validate(distill_config(killed_teacher, **{"train.epochs": 1}))
    out = tmp_path / "refused"
    with pytest.raises(UsageError, match=r"1/3 planned epochs, UNFINISHED.*allow_unfinished"):
        run_distill(cfg, out, progress=False)
    assert not out.exists()

    allowed = DistillExperiment.model_validate(distill_config(
        killed_teacher, **{"train.epochs": 1, "teacher.allow_unfinished": True}))
    summary = run_distill(allowed, tmp_path / "allowed", progress=False)
    assert summary["teacher_provenance"]["finished"] is False


def test_study_report_opens_with_the_teacher_and_warns_when_unfinished():
    cfg = StudyConfig.model_validate({
        "teacher": {"source": "zoo:resnet56-fashion_mnist", "allow_unfinished": True},
        "students": [{"derive": "shallower"}], "techniques": ["none", "kd"],
        "data": {"limit_train": 3000, "limit_test": 2000}, "train": {"epochs": 10}})
    lines = header_lines(cfg, teacher_provenance("zoo:resnet56-fashion_mnist"), 0.93, 2000,
                         "edgedistill study s.yaml --out runs/s")
    text = "\n".join(lines)
    assert lines[0].startswith("**Warning: unfinished teacher.**")
    assert "5/30 planned epochs" in text and "3,000 training images, 2,000 test images" in text
    assert "10 epochs; seeds [0, 1, 2]" in text and "standard error of up to 1.1 points" in text
    assert text.endswith("**Reproduce**: `edgedistill study s.yaml --out runs/s`")
    finished = header_lines(cfg, teacher_provenance("zoo:resnet20-fashion_mnist"), 0.94, 5000,
                            None)
    assert finished[0].startswith("**Teacher**: teacher zoo:resnet20-fashion_mnist: 94.10%")
    assert not any("standard error" in x for x in finished)

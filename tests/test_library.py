"""The Python API: ``edgedistill.distill/train/evaluate/export/Distiller`` on a user's own
modules and ``TensorDataset``s, checked against the real CLI on the same models."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
import torchvision
import yaml
from torch import nn
from torch.utils.data import TensorDataset

import edgedistill
from edgedistill.data import load_dataset
from edgedistill.data.torch_dataset import from_dataset
from edgedistill.errors import UsageError
from tests.conftest import run_cli

NETS = '''
from torch import nn


def make_teacher(num_classes=10, width=16):
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))


def make_student(num_classes=10):
    return make_teacher(num_classes, width=4)
'''
SYNTHETIC = {"num_train": 256, "num_test": 64, "num_classes": 4, "image_size": 12}
SETTINGS = {"seed": 0, "data": {"augment": {"enabled": False}, "eval_batch_size": 64},
            "train": {"threads": 1, "progress": False, "device": "cpu",
                      "optimizer": {"name": "sgd", "lr": 0.05}}}


@pytest.fixture
def nets(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(textwrap.dedent(NETS))
    return path


def synthetic_sets():
    train, test = load_dataset("synthetic", **SYNTHETIC)
    return (TensorDataset(train.images, train.labels),
            TensorDataset(test.images.float() / 255, test.labels))  # floats in [0, 1] too


def records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_python_api_and_cli_yaml_factory_runs_agree(nets, tmp_path, write_yaml, monkeypatch):
    train, test = synthetic_sets()
    teacher, student = ({"factory": f"{nets}:make_{r}"} for r in ("teacher", "student"))
    summary = edgedistill.distill(teacher, student, train, test, losses=["ce", ("kd", 0.9)],
                                  epochs=2, batch_size=32, out=tmp_path / "py", **SETTINGS)
    assert summary["run_dir"] == str(tmp_path / "py")
    cfg = {**SETTINGS, "teacher": {"source": teacher}, "student": student,
           "losses": [{"name": "ce"}, {"name": "kd", "weight": 0.9}],
           "data": {**SETTINGS["data"], "dataset": "synthetic", "options": SYNTHETIC,
                    "batch_size": 32},
           "train": {**SETTINGS["train"], "epochs": 2}}
    result = run_cli("distill", str(write_yaml(cfg)), "--out", str(tmp_path / "cli"),
                     timeout=300)
    assert result.returncode == 0, result.stderr
    py, cli = records(tmp_path / "py"), records(tmp_path / "cli")
    assert len(py) == len(cli) == 2
    for key in ("train_loss", "loss/ce", "loss/kd", "test_acc", "train_acc", "teacher_acc"):
        assert [r[key] for r in py] == pytest.approx([r[key] for r in cli], rel=1e-6), key
    assert py[1]["train_loss"] < py[0]["train_loss"]
    monkeypatch.chdir(tmp_path.parent)  # the runs rebuild their factory models from anywhere
    a, b = (edgedistill.load_model(tmp_path / run) for run in ("py", "cli"))
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_a_module_prefixed_torchvision_resnet18_state_dict_is_a_teacher(tmp_path):
    torch.manual_seed(0)
    state = torchvision.models.resnet18(num_classes=4).state_dict()
    path = tmp_path / "teacher.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # DataParallel's layout
    images = torch.rand(96, 3, 16, 16)
    data = TensorDataset(images, torch.arange(96) % 4)
    summary = edgedistill.distill({"name": "torchvision:resnet18", "weights": str(path)},
                                  {"derive": "shallower"}, data, epochs=1, batch_size=32,
                                  **SETTINGS)
    info = summary["teacher_provenance"]
    assert info["kind"] == "foreign" and info["finished"] is None
    from edgedistill.models.foreign import file_sha256

    assert info["weights_sha256"] == file_sha256(path)
    assert summary["student"] == "torchvision:resnet18-b1_1_1_1"
    teacher = edgedistill.load_model({"name": "torchvision:resnet18", "weights": str(path)},
                                     num_classes=4)
    assert torch.equal(teacher.fc.weight, state["fc.weight"])


def test_pretrained_offline_exits_2_with_one_line(tmp_path, write_yaml):
    cfg = {**SETTINGS, "teacher": {"source": {"name": "torchvision:resnet18",
                                              "pretrained": True}},
           "student": {"derive": "shallower"},
           "data": {"dataset": "synthetic", "options": SYNTHETIC}}
    env = {"TORCH_HOME": str(tmp_path / "torch")}  # nothing cached to fall back on
    result = subprocess.run([sys.executable, "-m", "edgedistill.cli", "distill",
                             str(write_yaml(cfg)), "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, **env})
    assert result.returncode == 2
    lines = (result.stdout + result.stderr).strip().splitlines()  # torch.hub's chatter too
    assert len(lines) == 1 and "must download" in lines[0] and "weights: PATH" in lines[0]
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_a_typo_in_a_python_keyword_is_the_yaml_error(tmp_path):
    train, _ = synthetic_sets()
    with pytest.raises(UsageError, match="unknown key 'train.epoch'; allowed keys here: .*epochs"):
        edgedistill.distill("zoo:x", "resnet8", train, epochs=1, train={"epoch": 3})
    with pytest.raises(UsageError, match="unknown key 'data.augment.flip'"):
        edgedistill.train("resnet8", train, epochs=1, **{"data.augment.flip": True})


def test_train_evaluate_and_export_a_users_module(tmp_path):
    import numpy as np

    from edgedistill.export.onnx import run_session, session

    train, test = synthetic_sets()
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 4))
    summary = edgedistill.train(model, train, test, epochs=2, batch_size=32,
                                out=tmp_path / "run", **SETTINGS)
    assert (tmp_path / "run" / "model.safetensors").exists()
    scores = edgedistill.evaluate(model, test)
    assert scores["images"] == 64
    assert scores["acc"] == pytest.approx(summary["final_test_acc"])
    out = edgedistill.export(model, data=test, int8=True, out=tmp_path / "export")
    data = from_dataset(test, "test", stats=model.input_stats, limit=1 << 30)
    x = ((data.images.float() / 255 - torch.tensor(data.mean).view(1, -1, 1, 1))
         / torch.tensor(data.std).view(1, -1, 1, 1))
    with torch.no_grad():
        ref = model.cpu().eval()(x).numpy()
    assert np.abs(run_session(session(out["onnx"]), x.numpy()) - ref).max() < 1e-4
    assert (tmp_path / "export" / "model.int8.onnx").stat().st_size > 0


def test_distiller_in_a_hand_written_loop_reduces_the_loss():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(48, 5))
    student = nn.Sequential(nn.Flatten(), nn.Linear(48, 5))
    images, labels = torch.randn(64, 3, 4, 4), torch.randint(0, 5, (64,))
    distiller = edgedistill.Distiller(student, teacher, ["ce", ("kd", 0.9)], example=images)
    optimizer = torch.optim.SGD(distiller.parameters(), lr=0.5)
    totals = []
    for _ in range(30):
        out, terms = distiller(images, labels)
        assert set(terms) == {"ce", "kd"} and out.shape == (64, 5)
        loss = sum(terms.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(loss.item())
    assert totals[-1] < 0.7 * totals[0]
    assert not any(p.requires_grad for p in teacher.parameters())  # the teacher stays frozen
    assert all(p.grad is None for p in teacher.parameters())


def test_datasets_beyond_the_memory_limit_or_range_are_refused():
    data = TensorDataset(torch.zeros(10, 3, 8, 8, dtype=torch.uint8), torch.zeros(10))
    with pytest.raises(UsageError, match="above the in-memory limit of"):
        from_dataset(data, "train", limit=1000)
    normalized = TensorDataset(torch.randn(10, 3, 8, 8) * 3, torch.zeros(10))
    with pytest.raises(UsageError, match="drop transforms.Normalize"):
        from_dataset(normalized, "train", limit=1 << 30)


def test_import_edgedistill_is_cheap():
    code = "import sys, edgedistill; assert 'torch' not in sys.modules; print(edgedistill.evaluate)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "function evaluate" in result.stdout


def test_a_pool_of_fresh_factory_teachers_is_refused(nets):
    train, _ = synthetic_sets()
    teacher = {"factory": f"{nets}:make_teacher"}
    with pytest.raises(UsageError, match="each replica would draw its own random weights"):
        edgedistill.distill(teacher, {"factory": f"{nets}:make_student"}, train, epochs=1,
                            teacher={"mode": "pool"}, **SETTINGS)


def test_the_memory_budget_setting_bounds_a_python_dataset(nets):
    train, _ = synthetic_sets()  # 256 x 3 x 12 x 12 bytes = 0.1 MiB
    with pytest.raises(UsageError, match="above the in-memory limit of 0.0 GiB "
                                         r"\(data.memory_budget_gb\)"):
        edgedistill.train({"factory": f"{nets}:make_student"}, train, epochs=1,
                          data={"memory_budget_gb": 0.00001, "streaming": False})


def test_pil_images_and_plain_lists_are_read_like_tensors():
    from PIL import Image

    pixels = torch.randint(0, 256, (4, 8, 8, 3), dtype=torch.uint8)
    items = [(Image.fromarray(p.numpy()), i % 2) for i, p in enumerate(pixels)]
    data = from_dataset(items, "train", limit=1 << 20)
    assert torch.equal(data.images, pixels.permute(0, 3, 1, 2))
    assert data.labels.tolist() == [0, 1, 0, 1] and data.num_classes == 2


def test_a_dataset_name_distils_evaluates_and_exports_through_the_api(tmp_path):
    """``train="synthetic"``: the run loads that dataset itself (its default 512/128
    split), ``evaluate(run, name)`` scores its test split as the run did, and
    ``export(run_dir)`` exports the run like ``edgedistill export``."""
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                            nn.Flatten(), nn.Linear(8, 10))
    summary = edgedistill.distill(teacher, "resnet8", "synthetic", epochs=1, batch_size=64,
                                  out=tmp_path / "run", **SETTINGS)
    run = tmp_path / "run"
    assert summary["run_dir"] == str(run) and summary["images_seen"] == 512
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["dataset"] == "synthetic" and saved["student"]["name"] == "resnet8"
    scores = edgedistill.evaluate(str(run), "synthetic")
    assert scores["images"] == 128
    assert scores["acc"] == pytest.approx(summary["final_test_acc"])
    with pytest.raises(UsageError, match="unknown dataset 'synthtic'"):
        edgedistill.evaluate(str(run), "synthtic")
    exported = edgedistill.export(str(run), int8=True)
    assert exported["onnx"] == str(run / "export" / "model.onnx")
    assert exported["max_abs_diff_vs_torch"] < 1e-4
    assert exported["torch_test_acc"] == pytest.approx(summary["final_test_acc"])
    assert abs(exported["onnx_test_acc"] - exported["torch_test_acc"]) <= 1 / 128
    assert (run / "export" / "model.int8.onnx").stat().st_size > 0
    assert json.loads((run / "export" / "export.json").read_text())["onnx"] == exported["onnx"]


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_plain_weights_file_as_teacher_says_how_to_load_it(nets, tmp_path, suffix):
    """A state dict saved by someone else has no model spec: the error gives the way in
    (``FOREIGN_HINT``), and following it (``{factory: ..., weights: PATH}``) works."""
    from safetensors.torch import save_file

    from edgedistill.api import FOREIGN_HINT
    from edgedistill.models.foreign import import_factory

    torch.manual_seed(0)
    state = import_factory(f"{nets}:make_teacher")().state_dict()
    path = tmp_path / f"teacher{suffix}"
    if suffix == ".pt":
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(UsageError) as err:
        edgedistill.distill(str(path), "resnet8", "synthetic", epochs=1, out=tmp_path / "bad",
                            **SETTINGS)
    text = str(err.value)
    assert str(path) in text and FOREIGN_HINT in text and len(text.splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    summary = edgedistill.distill({"factory": f"{nets}:make_teacher", "weights": str(path)},
                                  "resnet8", "synthetic", epochs=1, batch_size=128,
                                  out=tmp_path / "run", **SETTINGS)
    assert summary["images_seen"] == 512

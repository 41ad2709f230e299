"""A kill while ``metrics.jsonl`` gets its epoch line leaves a torn last line; ``--resume``
drops it, recomputes that epoch from the checkpoint and ends as an uninterrupted run."""

import json
import os
import shutil

import pytest
from safetensors.torch import load_file

from edgedistill.errors import UsageError
from edgedistill.train.trainer import epoch_checkpoint, read_records
from tests.conftest import run_cli, tiny_train_config

TIMING = {"epoch_seconds", "images_per_s", "wall_seconds"}


def records(run_dir):
    return [{k: v for k, v in r.items() if k not in TIMING}
            for r in read_records(run_dir / "metrics.jsonl")]


def test_resume_repairs_a_torn_last_line(tmp_path, write_yaml):
    cfg = write_yaml(tiny_train_config(**{"train.keep_epoch_checkpoints": True,
                                          "train.deterministic": True,
                                          "data.limit_train": 256, "data.limit_test": 128}))
    full = tmp_path / "full"
    assert run_cli("train", str(cfg), "--out", str(full)).returncode == 0

    # the state a kill leaves: checkpoint after epoch 1, epoch 2's line half written
    torn = tmp_path / "torn"
    shutil.copytree(full, torn)
    (torn / "summary.json").unlink()
    shutil.copyfile(epoch_checkpoint(torn, 0), torn / "checkpoints" / "last.pt")
    metrics = torn / "metrics.jsonl"
    first, second = metrics.read_text().splitlines(keepends=True)
    os.truncate(metrics, len(first) + len(second) // 2)
    with pytest.raises(json.JSONDecodeError):
        [json.loads(x) for x in metrics.read_text().splitlines()]

    res = run_cli("train", str(cfg), "--out", str(torn), "--resume")
    assert res.returncode == 0, res.stderr
    assert "dropped a torn last line" in res.stdout
    assert records(torn) == records(full)
    assert metrics.read_text().endswith("}\n") and len(metrics.read_text().splitlines()) == 2
    a, b = load_file(str(full / "model.safetensors")), load_file(str(torn / "model.safetensors"))
    assert all((a[k] == b[k]).all() for k in a)


def test_a_damaged_line_before_the_last_is_an_error(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 0}\n{"epo\n{"epoch": 2}\n')
    with pytest.raises(UsageError, match=r"metrics.jsonl: line 2 is not JSON"):
        read_records(path)
    path.write_text('{"epoch": 0}\n{"epo')
    assert read_records(path) == [{"epoch": 0}]

"""Kill a real training process with SIGKILL mid-run, resume it, and check it ends
with exactly the metrics and weights of a run that was never interrupted."""

import json
import os
import signal
import subprocess
import time

from safetensors.torch import load_file

from tests.conftest import CLI, run_cli, tiny_train_config

TIMING = {"epoch_seconds", "images_per_s", "wall_seconds"}


def records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING} for x in lines]


def test_kill_and_resume_matches_uninterrupted_run(tmp_path, write_yaml):
    cfg = tiny_train_config(**{"train.epochs": 3, "train.deterministic": True,
                               "train.checkpoint_every_steps": 3,
                               "data.limit_train": 640})
    path = write_yaml(cfg)
    full = run_cli("train", str(path), "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr

    killed_dir = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*CLI, "train", str(path), "--out", str(killed_dir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = killed_dir / "checkpoints" / "last.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert ckpt.exists(), "no checkpoint appeared before the process ended"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed_dir / "summary.json").exists(), "process finished before the kill"

    resumed = run_cli("train", str(path), "--out", str(killed_dir), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert records(killed_dir) == records(tmp_path / "full")
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(killed_dir / "model.safetensors"))
    assert all((a[k] == b[k]).all() for k in a)


def test_existing_run_dir_is_not_overwritten(tmp_path, write_yaml):
    path = write_yaml(tiny_train_config(**{"train.epochs": 1, "data.limit_train": 128}))
    out = tmp_path / "run"
    assert run_cli("train", str(path), "--out", str(out)).returncode == 0
    before = (out / "metrics.jsonl").read_text()
    again = run_cli("train", str(path), "--out", str(out))
    assert again.returncode == 2
    assert "already has results" in again.stderr and "--resume" in again.stderr
    assert (out / "metrics.jsonl").read_text() == before

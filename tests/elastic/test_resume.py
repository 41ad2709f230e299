"""``edgedistill distill`` with the pool source, killed with SIGKILL mid-epoch and resumed
with ``--resume``: it ends with exactly the weights of a run never interrupted, so no
batch was replayed or skipped. Each run embeds its own Ray, which dies with it."""

import json
import os
import signal
import subprocess
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import CLI, run_cli
from tests.elastic.conftest import SYNTHETIC

pytestmark = pytest.mark.slow

TIMING = {"epoch_seconds", "images_per_s", "wall_seconds", "teacher_wait_s", "teacher_resent",
          "replica_restarts", "replicas"}


def config(teacher) -> dict:
    return {
        "name": "pool", "seed": 0,
        "data": {"dataset": "synthetic", "options": SYNTHETIC, "batch_size": 32},
        "teacher": {"source": str(teacher), "mode": "pool",
                    "pool": {"replicas": [{"backend": "torch", "num_cpus": 0.5}],
                             "max_in_flight": 3}},
        "student": {"name": "resnet8", "kwargs": {"width": 0.5}},
        "train": {"epochs": 2, "threads": 1, "progress": False, "deterministic": True,
                  "checkpoint_every_steps": 5, "optimizer": {"name": "sgd", "lr": 0.05}},
    }


def records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING} for x in lines]


def test_kill_the_trainer_and_resume_mid_epoch(tmp_path, write_yaml, teacher_file):
    path = write_yaml(config(teacher_file))
    full = run_cli("distill", str(path), "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr

    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*CLI, "distill", str(path), "--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = killed / "checkpoints" / "last.pt"
    deadline = time.time() + 400
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert ckpt.exists(), "no checkpoint appeared before the process ended"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists(), "process finished before the kill"
    state = torch.load(ckpt, weights_only=True)
    assert 0 < state["step"] < 16, "the kill should land mid-epoch"

    resumed = run_cli("distill", str(path), "--out", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert records(killed) == records(tmp_path / "full")
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(killed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

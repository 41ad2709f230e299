"""No process of a run's embedded Ray outlives the run, whatever ends it: an exception,
SIGTERM, or SIGKILL of the student (after which Ray by itself leaves its DashboardAgent
and RuntimeEnvAgent running). Each run gets its own RAY_TMPDIR, so a process belongs to
the run when its command line or an open file lies under that folder."""

import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import ray  # noqa: F401  (puts the psutil Ray ships on the path, for the watchdog too)

from edgedistill.elastic.reaper import Reaper
from tests.conftest import CLI

STARTED_S = 240  # Ray and a replica start in ~10 s on a quiet 2-core machine
GONE_S = 20


def ray_processes(folder: str) -> list[str]:
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            cmd = " ".join(proc.cmdline())
            files = [f.path for f in proc.open_files()]
        except psutil.Error:
            continue
        if folder in cmd or any(f.startswith(folder) for f in files):
            found.append(f"{proc.pid} {proc.name()} {cmd[:100]}")
    return found


def gone_within(folder: str, seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := ray_processes(folder)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.fixture
def ray_dir():
    folder = tempfile.mkdtemp(prefix="edr", dir="/tmp")  # short: Ray's socket paths
    yield folder
    for line in ray_processes(folder):  # never leave one behind, even when a test fails
        os.kill(int(line.split()[0]), signal.SIGKILL)
    shutil.rmtree(folder, ignore_errors=True)


def start(tmp_path, write_yaml, ray_dir, lr=0.05):
    cfg = {
        "name": "pool", "seed": 0,
        "data": {"dataset": "fashion_mnist", "limit_train": 2048, "limit_test": 128,
                 "batch_size": 64},
        "teacher": {"source": "zoo:resnet20-fashion_mnist", "mode": "pool",
                    "pool": {"replicas": [{"backend": "torch", "num_cpus": 0.5}],
                             "max_in_flight": 2}},
        "student": {"name": "resnet8", "kwargs": {"width": 0.5}},
        "losses": [{"name": "ce"}, {"name": "kd"}],
        "train": {"epochs": 200, "threads": 1, "progress": False,
                  "checkpoint_every_steps": 2, "optimizer": {"name": "sgd", "lr": lr}},
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_TMPDIR": ray_dir}
    err = open(tmp_path / "stderr.txt", "w")
    proc = subprocess.Popen([*CLI, "distill", str(write_yaml(cfg)), "--out",
                             str(tmp_path / "run")], env=env, stdout=subprocess.DEVNULL,
                            stderr=err)
    return proc, tmp_path / "run" / "checkpoints" / "last.pt"


def wait_training(proc, ckpt, ray_dir) -> list[str]:
    deadline = time.monotonic() + STARTED_S
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ckpt.exists(), "training with the pool did not start"
    running = ray_processes(ray_dir)
    for name in ("raylet", "gcs_server", "DashboardAgent", "RuntimeEnvAgent", "ReplicaWorker"):
        assert any(name in line for line in running), (name, running)
    return running


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_the_student_leaves_no_ray_process(tmp_path, write_yaml, ray_dir, sig):
    proc, ckpt = start(tmp_path, write_yaml, ray_dir)
    try:
        wait_training(proc, ckpt, ray_dir)
        proc.send_signal(sig)
        assert proc.wait(60) != 0
    finally:
        proc.kill()
    assert gone_within(ray_dir, GONE_S) == []


def test_an_exception_in_training_leaves_no_ray_process(tmp_path, write_yaml, ray_dir):
    proc, _ = start(tmp_path, write_yaml, ray_dir, lr=1e30)
    try:
        assert proc.wait(STARTED_S) == 2
    finally:
        proc.kill()
    assert "training diverged at epoch 1/200, step 2/32" in (tmp_path / "stderr.txt").read_text()
    assert gone_within(ray_dir, GONE_S) == []


def test_the_watchdog_kills_only_what_was_started_while_marking():
    reaper = Reaper()
    with reaper.marking():
        marked = subprocess.Popen(["sleep", "60"])
    unmarked = subprocess.Popen(["sleep", "60"])
    try:
        reaper.close()
        assert marked.wait(10) == -signal.SIGKILL
        assert unmarked.poll() is None and reaper.proc.returncode == 0
    finally:
        marked.kill()
        unmarked.kill()

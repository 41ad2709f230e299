"""A folder of 200 JPEGs streams through ``distill`` with each teacher source: online,
a cache built by streaming, and a Ray pool that receives the student's own images; a
streaming run killed mid-epoch and resumed ends exactly as one never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import torch
from safetensors.torch import load_file

from edgedistill import api
from edgedistill.config import DistillExperiment
from edgedistill.distill.cache import CacheSource
from edgedistill.distill.run import run_distill
from edgedistill.distill.sources import OnlineSource
from edgedistill.elastic.plan import BatchPlan
from edgedistill.elastic.protocol import prepare_images
from edgedistill.models import create_model
from edgedistill.train.checkpoint import save_weights
from tests.conftest import CLI, run_cli

CPU = torch.device("cpu")
TIMING = {"epoch_seconds", "images_per_s", "wall_seconds", "teacher_wait_s", "teacher_resent",
          "replica_restarts", "replicas", "cache_build_s"}


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=4, in_channels=3)
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_weights(path, model.state_dict(), model.spec)
    return path


def config(root, teacher, mode: str = "online", **teacher_over) -> dict:
    return {
        "name": "stream", "seed": 0,
        "data": {"dataset": "imagefolder", "root": str(root), "options": {"image_size": 32},
                 "streaming": True, "workers": 2, "batch_size": 32, "eval_batch_size": 40,
                 "num_draws": 2},
        "teacher": {"source": str(teacher), "mode": mode, **teacher_over},
        "student": {"name": "resnet8", "kwargs": {"width": 0.5}},
        "train": {"epochs": 2, "threads": 1, "progress": False, "deterministic": True,
                  "checkpoint_every_steps": 2, "optimizer": {"name": "sgd", "lr": 0.05}},
    }


def records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING} for x in lines]


def streaming_pipe(root, teacher):
    cfg = DistillExperiment.model_validate(config(root, teacher))
    train, _, test = api.build_splits(cfg.data, 0)
    return api.build_pipelines(cfg.data, train, test, 0, CPU)[0]


def test_distill_streams_with_an_online_teacher(jpeg_folder, teacher_file, tmp_path):
    cfg = DistillExperiment.model_validate(config(jpeg_folder, teacher_file))
    run_distill(cfg, tmp_path / "run", progress=False)
    got = records(tmp_path / "run")
    assert [r["epoch"] for r in got] == [0, 1]
    assert all(0 <= r["test_acc"] <= 1 and "teacher_acc" in r for r in got)


def test_the_cache_builds_by_streaming_and_answers_as_the_online_teacher(
        jpeg_folder, teacher_file, tmp_path):
    teacher = api.load_model(teacher_file)
    pipe = streaming_pipe(jpeg_folder, teacher_file)
    lines = []
    cache = CacheSource(teacher, tmp_path, CPU, num_draws=2, precision="fp32",
                        log=lines.append, batch_size=48)
    cache.attach(["layer2"], pipe)
    assert "built 2 draws x 160 samples" in lines[-1]
    online = OnlineSource(teacher, CPU)
    online.attach(["layer2"], pipe)
    for epoch, step in ((0, 1), (1, 4), (2, 0)):
        batch = pipe.batch(epoch, step)
        want, got = online.outputs(batch), cache.outputs(batch)
        assert torch.allclose(got.logits, want.logits, atol=1e-5, rtol=1e-5)
        assert torch.allclose(got.features["layer2"], want.features["layer2"], atol=1e-5)
    again = CacheSource(teacher, tmp_path, CPU, num_draws=2, precision="fp32",
                        log=lines.append)
    again.attach(["layer2"], pipe)
    assert lines[-1].startswith("teacher cache: reusing")


def test_distill_streams_with_a_cached_teacher(jpeg_folder, teacher_file, tmp_path):
    cfg = DistillExperiment.model_validate(config(
        jpeg_folder, teacher_file, "cache", cache={"num_draws": 2, "dir": str(tmp_path / "c")}))
    run_distill(cfg, tmp_path / "run", progress=False)
    assert len(records(tmp_path / "run")) == 2
    assert len(list((tmp_path / "c").glob("*/meta.json"))) == 1


def test_pool_requests_carry_the_students_exact_images(jpeg_folder, teacher_file):
    pipe = streaming_pipe(jpeg_folder, teacher_file)
    plan = BatchPlan(pipe)
    assert plan.inputs.crop_pad == 0 and plan.inputs.shape == (3, 32, 32)
    for key in ((0, 3), (1, 0)):
        batch, request = pipe.batch(*key), plan.request(key)
        assert request.offsets is None and plan.holds(key, batch.indices)
        assert torch.equal(torch.from_numpy(request.images), batch.raw)
        assert torch.equal(prepare_images(request, plan.inputs), batch.images)


@pytest.mark.slow
def test_distill_streams_with_a_teacher_pool(jpeg_folder, teacher_file, tmp_path):
    online = DistillExperiment.model_validate(config(jpeg_folder, teacher_file))
    run_distill(online, tmp_path / "online", progress=False)
    pool = DistillExperiment.model_validate(config(
        jpeg_folder, teacher_file, "pool",
        pool={"replicas": [{"backend": "torch", "num_cpus": 0.5}], "max_in_flight": 2,
              "wire_precision": "fp32"}))
    run_distill(pool, tmp_path / "pool", progress=False)
    got, want = records(tmp_path / "pool"), records(tmp_path / "online")
    assert [r["epoch"] for r in got] == [0, 1]
    assert [r["test_acc"] for r in got] == pytest.approx([r["test_acc"] for r in want],
                                                         abs=0.05)
    assert [r["teacher_acc"] for r in got] == [r["teacher_acc"] for r in want]


@pytest.mark.slow
def test_kill_a_streaming_run_mid_epoch_and_resume_exactly(jpeg_folder, teacher_file, tmp_path,
                                                          write_yaml):
    path = write_yaml(config(jpeg_folder, teacher_file))
    full = run_cli("distill", str(path), "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr

    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*CLI, "distill", str(path), "--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = killed / "checkpoints" / "last.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert ckpt.exists(), "no checkpoint appeared before the process ended"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists(), "process finished before the kill"
    state = torch.load(ckpt, weights_only=True)
    assert (state["epoch"], state["step"]) < (1, 0) and 0 < state["step"] < 5

    resumed = run_cli("distill", str(path), "--out", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert records(killed) == records(tmp_path / "full")
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(killed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

"""A real local Ray pool: answers equal the in-process teacher's, batches come in order,
replicas are added, removed, killed and stalled mid-epoch, and every batch is still
accepted exactly once. One pool of two replicas is shared by the module, because a
replica process takes seconds to start on a busy machine."""

import contextlib
import os
import signal
import time

import pytest
import torch

from edgedistill import api
from edgedistill.config import DistillExperiment, LossConfig
from edgedistill.distill.distiller import Distiller
from edgedistill.distill.sources import OnlineSource
from edgedistill.elastic import BatchPlan, PoolSource, TeacherPool, parse_replicas
from edgedistill.errors import UsageError
from edgedistill.models import create_model
from edgedistill.train.callbacks import Callback
from edgedistill.train.trainer import Trainer
from tests.elastic.conftest import CPU, SYNTHETIC, pool_config, train_pipe

TORCH = [{"backend": "torch", "num_cpus": 0.5}]


@pytest.fixture(scope="module")
def pool(local_ray, teacher_file, data):
    plan = BatchPlan(train_pipe(data))
    pool = TeacherPool(str(teacher_file), parse_replicas(TORCH * 2), ["layer2"], plan.inputs,
                       max_in_flight=2, log=print)
    yield pool
    pool.close()


@pytest.fixture
def source(pool, teacher_file, data):
    """A source on the shared pool, which is scaled back to 2 replicas afterwards (without
    waiting: replicas start while the next test runs)."""
    src = PoolSource(str(teacher_file), pool_config(), CPU, pool=pool)
    src.attach(["layer2"], train_pipe(data))
    yield src
    src.close()
    pool.scale(2)


def reference(teacher_file, data):
    online = OnlineSource(api.load_model(teacher_file), CPU)
    online.attach(["layer2"], train_pipe(data))
    return online


def assert_exactly_once(ledger, keys):
    assert ledger.served == keys
    assert all(ledger.accepted[k] == 1 for k in keys)
    assert max(ledger.accepted.values()) == 1


def test_pool_answers_match_the_in_process_teacher(source, teacher_file, data):
    pipe = train_pipe(data)
    online = reference(teacher_file, data)
    keys = []
    for epoch in range(2):
        for step in (*range(13, 16),) if epoch == 0 else range(3):
            batch = pipe.batch(epoch, step)
            got, want = source.outputs(batch), online.outputs(batch)
            keys.append((epoch, step))
            assert (got.logits - want.logits).abs().max() < 2e-3  # fp16 on the wire
            assert torch.allclose(got.features["layer2"], want.features["layer2"], atol=1e-2)
    assert_exactly_once(source.accounting(), keys)
    assert source.accounting().resent == 0


def test_fp32_wire_gives_the_online_teachers_exact_values(pool, teacher_file, data):
    """With ``wire_precision: fp32`` a replica's answer is bit for bit the in-process
    teacher's (same backend, same inputs rebuilt from uint8 and the draw)."""
    src = PoolSource(str(teacher_file), pool_config(wire_precision="fp32"), CPU, pool=pool)
    src.attach(["layer2"], train_pipe(data))
    online = reference(teacher_file, data)
    for step in range(2):
        batch = train_pipe(data).batch(1, step)
        got, want = src.outputs(batch), online.outputs(batch)
        assert torch.equal(got.logits, want.logits)
        assert torch.equal(got.features["layer2"], want.features["layer2"])
    src.close()


def test_top_k_answers(pool, teacher_file, data):
    src = PoolSource(str(teacher_file), pool_config(top_k=3), CPU, pool=pool)
    src.attach([], train_pipe(data))
    batch = train_pipe(data).batch(0, 0)
    got, want = src.outputs(batch), reference(teacher_file, data).outputs(batch)
    assert torch.equal(got.logits.argmax(1), want.logits.argmax(1))
    top = want.logits.topk(3, dim=1)
    assert torch.allclose(got.logits.gather(1, top.indices), top.values, atol=2e-3)


def test_autoscaler_shrinks_a_pool_whose_replicas_idle(pool, teacher_file, data):
    logs = []
    settings = {"min_replicas": 1, "max_replicas": 2, "interval_s": 1.0, "cooldown_s": 0}
    src = PoolSource(str(teacher_file), pool_config(autoscale=settings), CPU, pool=pool,
                     log=logs.append)
    pipe = train_pipe(data)
    src.attach([], pipe)
    pool.wait_started(300)
    assert pool.alive == 2
    for batch in pipe.epoch(3):
        src.outputs(batch)
        time.sleep(0.4)  # a slow student: two replicas mostly idle
    assert "teacher pool: autoscaling 2 -> 1 replicas" in logs
    assert len(pool.active()) == 1
    pool.scale(2)


def test_scale_up_and_down_mid_epoch(source, pool, teacher_file, data):
    pipe = train_pipe(data)
    online = reference(teacher_file, data)
    keys, sizes = [], []
    for batch in pipe.epoch(0):
        if batch.step == 2:
            source.scale(3)
        if batch.step == 6:
            assert pool.starting + pool.alive == 3
            pool.wait_started(300)  # let the new replicas join, then use them
        if batch.step == 10:
            source.scale(2)
        got = source.outputs(batch)
        assert (got.logits - online.outputs(batch).logits).abs().max() < 2e-3
        keys.append((0, batch.step))
        sizes.append(len(pool.active()))
    assert max(sizes) == 3 and sizes[-1] == 2
    assert_exactly_once(source.accounting(), keys)


def test_a_stalled_replica_is_replaced(pool, teacher_file, data):
    src = PoolSource(str(teacher_file), pool_config(deadline_s=4.0), CPU, pool=pool)
    src.attach([], train_pipe(data))
    pipe = train_pipe(data)
    keys = []
    restarts = pool.restarts
    victim = next(r for r in pool.replicas.values() if r.state == "alive")
    try:
        for batch in pipe.epoch(1):
            if batch.step == 3:
                os.kill(victim.info["pid"], signal.SIGSTOP)  # alive but silent
            src.outputs(batch)
            keys.append((1, batch.step))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim.info["pid"], signal.SIGCONT)
    assert_exactly_once(src.accounting(), keys)
    assert src.accounting().resent >= 1 and pool.restarts > restarts
    assert victim.id not in pool.replicas
    stats = src.stats()
    assert stats["teacher_resent"] >= 1 and stats["replicas"] >= 1


def test_a_replica_that_cannot_load_the_teacher_is_a_clear_error(local_ray, tmp_path, data):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a safetensors file")
    src = PoolSource(str(bad), pool_config(), CPU)
    with pytest.raises(UsageError, match=r"replica 0 .*cannot load teacher.*broken\.safetensors"):
        src.attach([], train_pipe(data))


def test_replicas_the_cluster_cannot_host_are_a_clear_error(local_ray, teacher_file, data):
    src = PoolSource(str(teacher_file), pool_config(replicas=[{"num_gpus": 1}]), CPU)
    with pytest.raises(UsageError, match="no Ray node has that much"):
        src.attach([], train_pipe(data))
    src = PoolSource(str(teacher_file), pool_config(replicas=[{"num_cpus": 1, "count": 3}]), CPU)
    with pytest.raises(UsageError, match="more than the Ray cluster has.*3 needed, 2 in"):
        src.attach([], train_pipe(data))


class KillReplica(Callback):
    """Kills a live replica with ``ray.kill`` after a given training step."""

    def __init__(self, pool, at_step: int):
        self.pool, self.at_step, self.steps = pool, at_step, []

    def on_step_end(self, trainer, m):
        import ray

        self.steps.append((m["epoch"], m["step"]))
        if m["step"] == self.at_step:
            victim = next(r for r in self.pool.replicas.values() if r.state == "alive")
            ray.kill(victim.actor)


def test_kill_a_replica_mid_epoch_trains_every_batch_once(source, pool, teacher_file, data,
                                                         tmp_path):
    cfg = DistillExperiment.model_validate({
        "teacher": {"source": "unused", "mode": "pool"}, "student": {"name": "resnet8"},
        "data": {"dataset": "synthetic", "options": SYNTHETIC, "batch_size": 32},
        "train": {"epochs": 1, "progress": False, "threads": 1}})
    pipe, test_pipe = train_pipe(data), api.build_pipelines(cfg.data, *data, 0, CPU)[1]
    student = create_model("resnet8", num_classes=10, in_channels=3, width=0.5)
    teacher = api.load_model(teacher_file)
    distiller = Distiller(student, teacher, source, [LossConfig(name="ce"), LossConfig(name="kd")])
    distiller.setup(pipe, pipe.batch(0, 0))
    killer = KillReplica(pool, at_step=4)
    Trainer(distiller, pipe, test_pipe, cfg, tmp_path, [killer], CPU).fit()
    trained = [(0, s) for s in range(16)]
    assert killer.steps == trained
    ledger = source.accounting()
    assert_exactly_once(ledger, [(0, 0), *trained])  # setup's probe, then the epoch
    assert ledger.repeats == 1 and ledger.resent >= 1
    assert pool.restarts >= 1

"""The parts of the elastic source that need no Ray: replica backends run in this
process, the wire format, the batch plan, settings validation, the autoscaling policy
and the unreachable-cluster error."""

import socket

import numpy as np
import pytest
import torch

from edgedistill import api
from edgedistill.distill.sources import TeacherRunner
from edgedistill.elastic import BatchPlan, ReplicaSpec, parse_replicas
from edgedistill.elastic.cluster import connect
from edgedistill.elastic.protocol import decode, encode, prepare_images
from edgedistill.elastic.replica import ReplicaWorker
from edgedistill.elastic.scaler import Autoscaler, Window
from edgedistill.elastic.spec import AutoscaleSettings, parse_autoscale
from edgedistill.errors import UsageError
from tests.elastic.conftest import CPU, train_pipe


def test_replica_rebuilds_the_students_exact_input(data):
    pipe = train_pipe(data)
    plan = BatchPlan(pipe)
    for key in [(0, 0), (0, 15), (1, 3)]:
        batch = pipe.batch(*key)
        request = plan.request(key)
        assert request.images.dtype == np.uint8 and request.offsets is not None
        assert torch.equal(plan.indices(key), batch.indices)
        assert torch.equal(prepare_images(request, plan.inputs), batch.images)


def test_plan_walks_across_epochs(data):
    plan = BatchPlan(train_pipe(data))
    assert plan.steps == 16
    assert plan.keys((0, 14), 4) == [(0, 14), (0, 15), (1, 0), (1, 1)]


@pytest.mark.parametrize("backend,tol", [("torch", 2e-3), ("onnx", 2e-3), ("onnx-int8", None)])
def test_backends_answer_like_the_in_process_teacher(teacher_file, data, backend, tol):
    pipe = train_pipe(data)
    plan = BatchPlan(pipe)
    spec = ReplicaSpec(backend=backend, num_cpus=1)
    worker = ReplicaWorker(0, str(teacher_file), spec, ["layer2"], plan.inputs,
                           plan.calibration(64))
    info = worker.load()
    assert info["load_s"] > 0 and info["node"] == "local"
    batch = pipe.batch(0, 2)
    want = TeacherRunner(api.load_model(teacher_file), ["layer2"], CPU)(batch.images)
    got = decode(worker.infer(plan.request((0, 2))), CPU)
    assert got.logits.shape == want.logits.shape
    assert got.features["layer2"].shape == want.features["layer2"].shape
    if tol is None:  # int8: close in aggregate, not elementwise
        corr = np.corrcoef(got.logits.flatten(), want.logits.flatten())[0, 1]
        assert corr > 0.9
    else:
        assert (got.logits - want.logits).abs().max() < tol
        assert (got.features["layer2"] - want.features["layer2"]).abs().max() < 1e-2


def test_top_k_reply_keeps_the_k_largest_logits():
    logits = torch.tensor([[0.5, 3.0, -1.0, 2.0], [1.0, 0.0, 4.0, -2.0]])
    reply = encode((0, 0), logits, {}, top_k=2)
    assert reply.logits is None and reply.top_values.dtype == np.float16
    dense = decode(reply, CPU).logits
    assert torch.equal(dense.argmax(1), logits.argmax(1))
    assert dense[0, 1] == 3.0 and dense[0, 3] == 2.0 and dense[0, 0] < 2.0 - 9


def test_replica_settings_are_validated():
    specs = parse_replicas([{"backend": "onnx-int8", "num_cpus": 2, "count": 3},
                            {"backend": "torch", "num_gpus": 1}])
    assert [s.backend for s in specs] == ["onnx-int8"] * 3 + ["torch"]
    assert specs[0].threads == 2 and specs[3].demand() == {"CPU": 1.0, "GPU": 1.0}
    with pytest.raises(UsageError, match=r"replicas\[1\].*backend.*'torch', 'onnx'"):
        parse_replicas([{}, {"backend": "tensorrt"}])
    with pytest.raises(UsageError, match="CPU only"):
        parse_replicas([{"backend": "onnx", "num_gpus": 1}])
    with pytest.raises(UsageError, match="unknown key 'cpus'"):
        parse_replicas([{"cpus": 1}])
    with pytest.raises(UsageError, match="min_replicas 3 > max_replicas 2"):
        parse_autoscale({"min_replicas": 3, "max_replicas": 2})


def test_autoscaler_grows_while_student_waits_and_shrinks_idle_replicas():
    scaler = Autoscaler(AutoscaleSettings(min_replicas=1, max_replicas=3))

    def window(wait, busy, alive=2, starting=0, room=True):
        return Window(wall_s=10.0, wait_s=wait, busy_s=busy, alive=alive, starting=starting,
                      room=room)

    assert scaler.decide(window(wait=3.0, busy=19.0)) == 3
    assert scaler.decide(window(wait=3.0, busy=19.0, room=False)) == 2
    assert scaler.decide(window(wait=3.0, busy=19.0, alive=3)) == 3  # at max
    assert scaler.decide(window(wait=3.0, busy=9.0, starting=1)) == 3  # let it start
    assert scaler.decide(window(wait=0.0, busy=6.0)) == 1  # 6 s of work fits in one
    assert scaler.decide(window(wait=0.0, busy=16.0)) == 2  # one alone would be >75% busy
    assert scaler.decide(window(wait=0.0, busy=1.0, alive=1)) == 1  # at min


def test_autoscaler_waits_an_interval_and_a_cooldown():
    scaler = Autoscaler(AutoscaleSettings(interval_s=5, cooldown_s=10, max_replicas=4))

    def room():
        return True

    assert scaler.tick(0.0, 0.0, 0.0, 1, 0, room) is None
    assert scaler.tick(3.0, 2.0, 3.0, 1, 0, room) is None  # interval not over
    assert scaler.tick(5.0, 2.0, 5.0, 1, 0, room) == 2
    assert scaler.tick(12.0, 9.0, 12.0, 2, 0, room) is None  # cooling down
    assert scaler.tick(16.0, 9.0, 12.0, 2, 0, room) is None  # window restarted at 12
    assert scaler.tick(20.5, 12.0, 20.0, 2, 0, room) == 3


def test_unreachable_ray_address_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    with pytest.raises(UsageError, match=f"cannot reach Ray at 127.0.0.1:{port}.*ray start"):
        connect(f"127.0.0.1:{port}")
    with pytest.raises(UsageError, match="not HOST:PORT"):
        connect("nonsense")


@pytest.mark.parametrize("teacher", [
    {"mode": "pool", "service": "fm56"},  # the spelling
    {"mode": "pool", "pool": {"service": "fm56", "max_in_flight": 3}},
    {"mode": "pool", "service": "fm56", "pool": {"service": "fm56", "max_in_flight": 3}},
])
def test_a_student_config_names_its_service_either_way(write_yaml, teacher):
    from edgedistill.config import DistillExperiment, dump_config, load_config
    from tests.elastic.conftest import SYNTHETIC

    path = write_yaml({"name": "svc", "seed": 0,
                       "data": {"dataset": "synthetic", "options": SYNTHETIC, "batch_size": 32},
                       "teacher": {"source": "zoo:resnet8", **teacher},
                       "student": {"name": "resnet8"}})
    cfg = load_config(path, DistillExperiment)
    assert cfg.teacher.mode == "pool" and cfg.teacher.pool.service == "fm56"
    assert cfg.teacher.pool.max_in_flight == teacher.get("pool", {}).get("max_in_flight", 4)
    assert "teacher.service" not in dump_config(cfg)  # one resolved spelling
    again = load_config(path, DistillExperiment, ["teacher.service=fm56"])  # --set: same name
    assert again.teacher.pool.service == "fm56"


def test_a_student_config_naming_two_services_is_refused(write_yaml):
    from edgedistill.config import DistillExperiment, load_config

    path = write_yaml({"name": "svc", "seed": 0, "data": {"dataset": "synthetic"},
                       "teacher": {"source": "zoo:resnet8", "mode": "pool", "service": "fm56",
                                   "pool": {"service": "cifar"}},
                       "student": {"name": "resnet8"}})
    with pytest.raises(UsageError) as err:
        load_config(path, DistillExperiment)
    message = str(err.value)
    assert "\n" not in message
    assert "teacher.service is 'fm56' but teacher.pool.service is 'cifar'" in message
    with pytest.raises(UsageError, match="teacher.service is 'fm56' but teacher.pool.service "
                                         "is 'x'"):
        load_config(path, DistillExperiment, ["teacher.pool.service=x"])

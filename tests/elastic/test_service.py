"""The teacher service on a real local Ray: students attach by name (from this process
and from another one), share it with each batch accepted exactly once per student while
replicas are killed, are refused for another teacher, survive a service restart
mid-epoch, and a crashed student is forgotten without hurting the others.

The module runs one private Ray (its own temp folder, 127.0.0.1 only) and one service
that its tests share; a test that needs its own service starts and stops it itself.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest
import torch

from edgedistill import api
from edgedistill.data import BatchPipeline
from edgedistill.distill.sources import OnlineSource
from edgedistill.elastic import BatchPlan, PoolSource
from edgedistill.elastic.cli import print_status
from edgedistill.elastic.service import FairQueue, find_service, start_service, stop_service
from edgedistill.errors import UsageError
from edgedistill.models import create_model
from edgedistill.train.checkpoint import save_weights
from tests.elastic.conftest import CPU, train_pipe

POOL = {"replicas": [{"backend": "torch", "num_cpus": 0.5}], "max_in_flight": 2,
        "deadline_s": 30.0, "autoscale": None}
STUDENT_TIMEOUT_S = 3.0


def pipe_with_seed(data, seed: int) -> BatchPipeline:
    train, _ = data
    return BatchPipeline(train, 32, train=True, seed=seed, augment=train.augment)


def serve(name: str, teacher_file, data, replicas: int = 2) -> dict:
    plan = BatchPlan(train_pipe(data))
    pool = {**POOL, "replicas": POOL["replicas"] * replicas}
    return start_service(name, str(teacher_file), pool, ["layer2"], plan.inputs, None,
                         student_timeout_s=STUDENT_TIMEOUT_S, timeout_s=240)


def student(teacher_file, service: str, address: str, pipe, layers=("layer2",), log=print):
    from edgedistill.config import PoolConfig

    cfg = PoolConfig.model_validate({"service": service, "address": address})
    src = PoolSource(str(teacher_file), cfg, CPU, log=log)
    src.attach(list(layers), pipe)
    return src


def online(teacher_file, pipe) -> OnlineSource:
    ref = OnlineSource(api.load_model(teacher_file), CPU)
    ref.attach(["layer2"], pipe)
    return ref


def assert_exactly_once(ledger, keys):
    assert ledger.served == keys
    assert all(ledger.accepted[k] == 1 for k in keys)
    assert max(ledger.accepted.values()) == 1


@pytest.fixture(scope="module")
def cluster():
    """A private Ray on 127.0.0.1; yields its address, for other processes to join."""
    import ray

    folder = tempfile.mkdtemp(prefix="eds", dir="/tmp")  # short: Ray's socket paths
    try:
        ctx = ray.init(address="local", num_cpus=2, include_dashboard=False,
                       log_to_driver=False, _node_ip_address="127.0.0.1", _temp_dir=folder)
        yield ctx.address_info["gcs_address"]
    finally:
        ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def service(cluster, teacher_file, data):
    serve("svc", teacher_file, data)
    try:
        yield "svc"
    finally:
        stop_service("svc")


def status(name: str) -> dict:
    import ray

    return ray.get(find_service(name).status.remote(), timeout=30)


def test_fair_queue_gives_a_free_slot_to_the_student_with_fewest_in_flight():
    queue = FairQueue()
    for i in range(20):
        queue.push("deep", ("deep", i))
    queue.push("shallow", ("shallow", 0))
    queue.push("shallow", ("shallow", 1))
    in_flight = {"deep": 0, "shallow": 0}
    order = []
    for _ in range(6):
        sid, item = queue.pop(in_flight)
        in_flight[sid] += 1
        order.append(item)
    assert order[:4] == [("deep", 0), ("shallow", 0), ("deep", 1), ("shallow", 1)]
    assert order[4:] == [("deep", 2), ("deep", 3)]  # only once the other has nothing queued
    queue.push("deep", ("deep", -1), front=True)  # a batch whose replica died goes first
    assert queue.pop({"deep": 0})[1] == ("deep", -1)
    queue.drop("deep")
    assert queue.pop({}) is None and len(queue) == 0


def test_no_such_service_fails_in_seconds(service, cluster, teacher_file, data):
    tic = time.monotonic()
    with pytest.raises(UsageError, match=r"no teacher service 'nope' runs .*running: svc\).*"
                                         r"teachers serve CONFIG --name nope"):
        student(teacher_file, "nope", cluster, train_pipe(data))
    assert time.monotonic() - tic < 10


def test_a_student_of_another_teacher_is_refused(service, cluster, teacher_file, data,
                                                 tmp_path):
    torch.manual_seed(1)
    model = create_model("resnet8", num_classes=10, in_channels=3)
    other = tmp_path / "other.safetensors"
    save_weights(other, model.state_dict(), model.spec)
    with pytest.raises(UsageError) as err:
        student(other, "svc", cluster, train_pipe(data))
    served = status("svc")["hash"]
    assert f"serves teacher {teacher_file} (weights {served})" in str(err.value)
    assert f"teacher.source is {other} (weights " in str(err.value)
    with pytest.raises(UsageError, match=r"hooks teacher layers \['layer2'\], not \['layer3'\]"):
        student(teacher_file, "svc", cluster, train_pipe(data), layers=["layer3"])


def test_two_students_share_it_exactly_once_while_a_replica_is_killed(service, cluster,
                                                                      teacher_file, data,
                                                                      capsys):
    pipes = [pipe_with_seed(data, 0), pipe_with_seed(data, 1)]
    students = [student(teacher_file, "svc", cluster, p) for p in pipes]
    refs = [online(teacher_file, p) for p in pipes]
    try:
        epochs = [p.epoch(0) for p in pipes]
        for step in range(16):
            for src, ref, batches in zip(students, refs, epochs, strict=True):
                batch = next(batches)
                got, want = src.outputs(batch), ref.outputs(batch)
                assert (got.logits - want.logits).abs().max() < 2e-3
                assert torch.allclose(got.features["layer2"], want.features["layer2"],
                                      atol=1e-2)
            if step == 3:
                info = status("svc")
                rows = {r["id"]: r for r in info["students"]}
                assert {s.pool.id for s in students} <= set(rows)
                slots = POOL["max_in_flight"] * len(info["replicas"])
                for src in students:  # what `teachers status` shows of each, while attached
                    row = rows[src.pool.id]
                    assert row["answered"] >= 4  # the 4 batches it trained on so far
                    assert 0 <= row["queued"] and 0 <= row["in_flight"] <= slots
                    window = src.cfg.max_in_flight * len(info["replicas"])
                    # asked for: the 4 batches trained on and a window ahead, each once
                    assert row["answered"] + row["queued"] + row["in_flight"] <= 4 + window
                    assert 0.0 <= row["wait_fraction"] <= 1.0  # it waited for batch 0
                    assert row["resent"] == 0
                print_status(info)
                table = capsys.readouterr().out
                for column in ("queued", "in flight", "answered", "re-sent", "wait"):
                    assert column in table
                for src in students:
                    row = rows[src.pool.id]
                    line = next(li for li in table.splitlines() if src.pool.id in li)
                    cells = [c.strip() for c in line.split("│")[1:-1]]
                    assert cells[2:6] == [str(row["queued"]), str(row["in_flight"]),
                                          str(row["answered"]), "0"], line
                    assert cells[6] == f"{100 * row['wait_fraction']:.0f}%", line
                victim = next(r for r in status("svc")["replicas"] if r["state"] == "alive")
                os.kill(victim["pid"], signal.SIGKILL)
        for src in students:
            assert_exactly_once(src.accounting(), [(0, s) for s in range(16)])
            assert src.pool.dropped == 0  # no batch was computed twice for it either
        assert status("svc")["restarts"] >= 1
    finally:
        for src in students:
            src.close()


def test_two_students_share_it_exactly_once_while_it_is_drained_and_grown(
        service, cluster, teacher_file, data):
    """The service is scaled down (a replica drained while it holds batches) and up again
    while two students train: each student's ledger holds every batch exactly once, the
    drained replica is stopped (not counted as a failure) and a new one is used."""
    import ray

    actor = find_service("svc")
    pipes = [pipe_with_seed(data, 0), pipe_with_seed(data, 1)]
    students = [student(teacher_file, "svc", cluster, p) for p in pipes]
    refs = [online(teacher_file, p) for p in pipes]
    done: list = []

    def step():
        key = divmod(len(done), 16)  # (epoch, step): as many as the waits below take
        for src, ref, pipe in zip(students, refs, pipes, strict=True):
            batch = pipe.batch(*key)
            got = src.outputs(batch)
            assert (got.logits - ref.outputs(batch).logits).abs().max() < 2e-3
        done.append(key)

    def step_until(ready, what: str, at_least: int = 3):
        deadline = time.monotonic() + 120
        for _ in range(at_least):
            step()
        while not ready(status("svc")):
            assert time.monotonic() < deadline, f"{what}: {status('svc')['replicas']}"
            step()

    try:
        restarts = status("svc")["restarts"]
        caught_in_flight = False
        for cycle in range(4):  # until a drain caught a replica holding batches
            step_until(lambda s: [r["state"] for r in s["replicas"]] == ["alive"] * 2,
                       "2 replicas alive")
            before = {r["id"] for r in status("svc")["replicas"]}
            down = ray.get(actor.scale.remote(1), timeout=60)
            drained = [*down["draining"], *down["removed"]]
            assert len(drained) == 1 and not down["added"], down
            caught_in_flight |= any(q > 0 for q in down["draining"].values())
            kept = sorted(before - {*drained})
            step_until(lambda s, kept=kept: [r["id"] for r in s["replicas"]] == kept,
                       "the drained replica stopped")
            up = ray.get(actor.scale.remote(2), timeout=60)
            assert len(up["added"]) == 1 and not up["draining"] and not up["removed"], up
            new = up["added"][0]
            step_until(lambda s, new=new: any(r["id"] == new and r["served"] > 0
                                              for r in s["replicas"]),
                       "the new replica answered")
            if caught_in_flight and cycle:
                break
        assert caught_in_flight, "no scale-down drained a replica holding batches"
        for src in students:
            assert_exactly_once(src.accounting(), done)
            assert src.accounting().resent == 0  # drained, not lost
            assert src.pool.dropped == 0  # and none computed twice
        assert status("svc")["restarts"] == restarts  # a drain is no failure
    finally:
        for src in students:
            src.close()
        ray.get(actor.scale.remote(2), timeout=60)


def test_a_student_forgotten_during_a_pause_sends_its_open_requests_again(
        service, cluster, teacher_file, data):
    """Silent longer than the student timeout (a long evaluation), a student is forgotten
    and its queue dropped; its next call finds that out and sends what is unanswered."""
    pipe = train_pipe(data)
    src = student(teacher_file, "svc", cluster, pipe)
    try:
        for step in range(4):
            src.outputs(pipe.batch(0, step))
        joined = src.pool.joined
        deadline = time.monotonic() + STUDENT_TIMEOUT_S + 30
        while src.pool.id in [r["id"] for r in status("svc")["students"]]:
            assert time.monotonic() < deadline, "the silent student was never forgotten"
            time.sleep(0.5)
        for step in range(4, 16):
            src.outputs(pipe.batch(0, step))
        assert src.pool.joined > joined  # met anew, and told so
        assert_exactly_once(src.accounting(), [(0, s) for s in range(16)])
    finally:
        src.close()


def test_the_service_forgets_a_crashed_student_and_serves_another_process(
        service, cluster, teacher_file, data):
    """A second process attaches by name and is served; killed, it is forgotten after
    the service's student timeout, and the service still serves this process."""
    code = (
        "import sys, time\n"
        "from tests.elastic.test_service import student, train_pipe\n"
        "from edgedistill.data import load_dataset\n"
        "from tests.elastic.conftest import SYNTHETIC\n"
        "data = load_dataset('synthetic', seed=0, **SYNTHETIC)\n"
        f"src = student({str(teacher_file)!r}, 'svc', {cluster!r}, train_pipe(data))\n"
        "pipe = train_pipe(data)\n"
        "for step in range(3):\n"
        "    src.outputs(pipe.batch(0, step))\n"
        "print('served', src.accounting().served, src.pool.id, flush=True)\n"
        "time.sleep(300)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = proc.stdout.readline()  # bounded: the child exits on any error
        assert line.startswith("served [(0, 0), (0, 1), (0, 2)]"), line
        sid = line.split()[-1]
        assert sid in [r["id"] for r in status("svc")["students"]]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        deadline = time.monotonic() + STUDENT_TIMEOUT_S + 30
        while sid in [r["id"] for r in status("svc")["students"]]:
            assert time.monotonic() < deadline, "the crashed student was never forgotten"
            time.sleep(0.5)
    finally:
        proc.kill()
        proc.wait()
    src = student(teacher_file, "svc", cluster, train_pipe(data))
    try:
        src.outputs(train_pipe(data).batch(0, 0))
        assert src.accounting().served == [(0, 0)]
    finally:
        src.close()


@pytest.mark.slow
def test_a_student_survives_a_service_restart_mid_epoch(cluster, teacher_file, data):
    serve("restart", teacher_file, data, replicas=1)
    logs: list[str] = []
    pipe = train_pipe(data)
    src = student(teacher_file, "restart", cluster, pipe, log=logs.append)
    ref = online(teacher_file, pipe)
    restarted = threading.Event()

    def restart():
        stop_service("restart")
        time.sleep(2)
        serve("restart", teacher_file, data, replicas=1)
        restarted.set()

    thread = None
    try:
        for batch in pipe.epoch(0):
            got = src.outputs(batch)
            assert (got.logits - ref.outputs(batch).logits).abs().max() < 2e-3
            if batch.step == 5:
                thread = threading.Thread(target=restart)
                thread.start()
                time.sleep(0.5)  # the service is down while the student asks for more
        assert_exactly_once(src.accounting(), [(0, s) for s in range(16)])
        assert src.pool.reconnects == 1, logs
        assert any("is back" in line for line in logs), logs
    finally:
        if thread is not None:
            thread.join(300)
        src.close()
        if restarted.is_set():
            stop_service("restart")


@pytest.mark.slow
def test_the_cli_serves_a_service_that_a_distill_run_attaches_to(cluster, teacher_file,
                                                                 tmp_path, write_yaml):
    """The user's path: `teachers serve`, `distill` with `teacher.pool.service` in another
    process, `teachers status`, `teachers stop`; then the name is free again."""
    from tests.conftest import run_cli
    from tests.elastic.conftest import SYNTHETIC

    path = write_yaml({
        "name": "svc", "seed": 0,
        "data": {"dataset": "synthetic", "options": SYNTHETIC, "batch_size": 32},
        "teacher": {"source": str(teacher_file), "mode": "pool",
                    "pool": {"replicas": [{"backend": "torch", "num_cpus": 0.5}],
                             "max_in_flight": 2}},
        "student": {"name": "resnet8", "kwargs": {"width": 0.5}},
        "train": {"epochs": 1, "threads": 1, "progress": False}})
    where = ["--address", cluster]
    served = run_cli("teachers", "serve", str(path), "--name", "cli", *where, timeout=300)
    try:
        assert served.returncode == 0, served.stderr
        assert "teacher service cli" in served.stdout and "alive" in served.stdout
        run = run_cli("distill", str(path), "--set", "teacher.pool.service=cli", "--set",
                      f"teacher.pool.address={cluster}", "--out", str(tmp_path / "run"),
                      timeout=400)
        assert run.returncode == 0, run.stderr
        assert (tmp_path / "run" / "summary.json").exists()
        shown = run_cli("teachers", "status", "cli", *where, timeout=120)
        assert shown.returncode == 0, shown.stderr
        assert "answers/s" in shown.stdout and "no student attached" in shown.stdout
        answered = status("cli")["replicas"][0]["served"]
        assert answered >= 16  # the run's epoch (and its evaluation needs none)
        grown = run_cli("teachers", "scale", "cli", "2", *where, timeout=120)
        assert grown.returncode == 0, grown.stderr
        assert "scaled to 2 replica(s): started [1]" in grown.stdout, grown.stdout
        assert len(status("cli")["replicas"]) == 2
        refused = run_cli("teachers", "scale", "cli", "0", *where, timeout=120)
        assert refused.returncode == 2 and "at least 1 replica" in refused.stderr, \
            refused.stderr
    finally:
        stopped = run_cli("teachers", "stop", "cli", *where, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    again = run_cli("teachers", "stop", "cli", *where, timeout=120)
    assert again.returncode == 2 and "no teacher service 'cli'" in again.stderr


def test_the_teachers_commands_name_an_unreachable_cluster(tmp_path):
    import socket

    from tests.conftest import run_cli

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    for args in (["status"], ["stop", "svc"], ["scale", "svc", "2"]):
        done = run_cli("teachers", *args, "--address", f"127.0.0.1:{port}", timeout=120)
        assert done.returncode == 2, done.stderr
        assert f"cannot reach Ray at 127.0.0.1:{port}" in done.stderr
        assert "Traceback" not in done.stderr
    missing = run_cli("teachers", "serve", str(tmp_path / "none.yaml"), "--name", "x",
                      timeout=120)
    assert missing.returncode == 2 and "none.yaml" in missing.stderr

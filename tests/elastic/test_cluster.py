"""A real two-node Ray cluster on this machine, started the way the README tells users
(``ray start --head``, then ``ray start --address`` on the second node): the pool
connects with ``address=``, and a replica that could not be placed is placed on the
second node as soon as it joins, mid-run.

The nodes run with ``--block`` so each is one process tree this test owns; stopping
them by their process id (not ``ray stop``, which would stop every Ray on the machine)
takes the node's processes down with them.
"""

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from edgedistill import api
from edgedistill.distill.sources import OnlineSource
from edgedistill.elastic import PoolSource
from tests.elastic.conftest import CPU, pool_config, train_pipe

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(log: Path, *args: str) -> subprocess.Popen:
    """``ray start --block``; its output goes to ``log``, which says when it is up."""
    with open(log, "w") as out:
        return subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", *args],
                                stdout=out, stderr=subprocess.STDOUT)


def started(log: Path) -> bool:
    return "Ray runtime started" in log.read_text(errors="replace")


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s:g}s")
        time.sleep(0.5)


@pytest.fixture
def head(tmp_path):
    """A head node; afterwards both nodes are stopped and the machine's record of the
    last started cluster (which ``ray start`` overwrites) is put back as it was."""
    record = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    before = record.read_text() if record.exists() else None
    port, log = free_port(), tmp_path / "head.log"
    nodes = [start_node(log, "--head", f"--port={port}", "--num-cpus=1",
                        "--include-dashboard=false")]
    try:
        wait_for(lambda: started(log), 180, "the head node did not start")
        yield f"127.0.0.1:{port}", nodes, tmp_path
    finally:
        for node in reversed(nodes):
            node.terminate()
        for node in nodes:
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
        if before is None:
            record.unlink(missing_ok=True)
        else:
            record.write_text(before)


def test_two_node_cluster_with_a_node_joining_mid_run(head, teacher_file, data, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # read when ray is first imported
    import ray

    address, nodes, logs = head
    src = PoolSource(str(teacher_file), pool_config(address=address, replicas=[
        {"backend": "torch", "num_cpus": 1}]), CPU)
    pipe = train_pipe(data)
    src.attach([], pipe)
    try:
        online = OnlineSource(api.load_model(teacher_file), CPU)
        online.attach([], pipe)
        src.scale(2)  # the head's only CPU is taken: this replica waits for a node
        batches = pipe.epoch(0)
        for batch in (next(batches) for _ in range(4)):
            assert (src.outputs(batch).logits - online.outputs(batch).logits).abs().max() < 2e-3
        assert src.pool.alive == 1 and src.pool.starting == 1
        nodes.append(start_node(logs / "node2.log", f"--address={address}", "--num-cpus=1"))
        wait_for(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 2, 180,
                 "the second node did not join")
        src.pool.wait_started(300)
        for batch in batches:
            assert (src.outputs(batch).logits - online.outputs(batch).logits).abs().max() < 2e-3
        health = src.pool.health()
        assert len({row["node"] for row in health}) == 2  # one replica on each node
        assert all(row["served"] > 0 for row in health)
        assert src.accounting().served == [(0, s) for s in range(16)]
    finally:
        src.close()
    assert not ray.is_initialized()  # the source connected, so it disconnected


def test_a_service_autoscales_onto_a_node_that_joins_mid_run(head, teacher_file, data,
                                                             monkeypatch):
    """A teacher service on a full one-CPU head: its student waits, the autoscaler finds no
    room; a second node joins and the autoscaler starts a replica there within seconds,
    which then answers, with every batch still accepted once."""
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    import ray

    from edgedistill.config import PoolConfig
    from edgedistill.elastic import BatchPlan
    from edgedistill.elastic.cluster import connect, disconnect
    from edgedistill.elastic.service import start_service, stop_service

    address, nodes, logs = head
    connect(address)
    pool = {"replicas": [{"backend": "torch", "num_cpus": 1}], "max_in_flight": 2,
            "deadline_s": 30.0, "autoscale": {"min_replicas": 1, "max_replicas": 2,
                                              "interval_s": 1.0, "cooldown_s": 0.0}}
    src, started = None, False
    try:
        start_service("grow", str(teacher_file), pool, [], BatchPlan(train_pipe(data)).inputs,
                      None, timeout_s=240)
        started = True
        src = PoolSource(str(teacher_file), PoolConfig(service="grow", address=address), CPU)
        pipe = train_pipe(data)
        src.attach([], pipe)
        keys, joined_at, grown_s = [], None, None
        deadline = time.monotonic() + 400
        for epoch in range(1000):
            for batch in pipe.epoch(epoch):
                src.outputs(batch)
                keys.append((batch.epoch, batch.step))
            rows = src.pool.health()
            if joined_at is None and epoch >= 2:
                assert [r["state"] for r in rows] == ["alive"], rows  # no room for a second
                nodes.append(start_node(logs / "node2.log", f"--address={address}",
                                        "--num-cpus=1"))
                wait_for(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 2, 180,
                         "the second node did not join")
                joined_at = time.monotonic()
            alive = [r for r in rows if r["state"] == "alive"]
            if joined_at and grown_s is None and len(alive) == 2:
                grown_s = time.monotonic() - joined_at
            if grown_s is not None and len({r["node"] for r in alive if r["served"]}) == 2:
                break
            assert time.monotonic() < deadline, f"no replica on the new node: {rows}"
        assert grown_s < 120, grown_s  # a replica starts in ~10 s on a quiet 2-core machine
        ledger = src.accounting()
        assert ledger.served == keys and max(ledger.accepted.values()) == 1
        assert all(ledger.accepted[k] == 1 for k in keys)
    finally:
        if src is not None:
            src.close()
        if started:
            stop_service("grow")
        disconnect()

"""Slow and hostile clients against a real uvicorn server on 127.0.0.1 (real sockets):
header and body deadlines, the connection cap, request smuggling, clients that leave
mid-body. Deadlines are 1 s here so each test is bounded to a few seconds."""

from __future__ import annotations

import logging
import resource
import statistics
import time
from dataclasses import replace

import httpx
import numpy as np
import pytest

from benchmarks.split_slow_clients import KINDS, SlowClients, probe
from edgedistill.split.connections import BODY_GRACE_S, ConnectionLimits
from edgedistill.split.server import create_app
from edgedistill.split.wire import MEDIA_TYPE, encode
from tests.split.live_server import connect, http_request, live_server, read_response, request
from tests.split.test_server import TOKEN, Z_SHAPE, fake_service

LIMITS = ConnectionLimits(header_timeout=1.0, body_timeout=1.0, keep_alive=1.0,
                          max_connections=150)
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": MEDIA_TYPE}
BODY = encode(np.full((1, *Z_SHAPE), 3.0, np.float32))


def valid(extra: dict[str, str] | None = None) -> bytes:
    return http_request("POST", "/v1/split",
                        {**AUTH, "Content-Length": str(len(BODY)), **(extra or {})}, BODY)


@pytest.fixture(scope="module")
def server():
    app = create_app(fake_service(), TOKEN, max_payload=4096, max_batch=4,
                     body_timeout=LIMITS.body_timeout)
    with live_server(app, LIMITS) as port:
        yield port, app.state.metrics


def closed_after(s, timeout: float = 10.0) -> tuple[int | None, float]:
    """(status answered or None, seconds until the server closed the socket)."""
    tic = time.monotonic()
    s.settimeout(timeout)
    status, _ = read_response(s)
    while True:
        try:
            if not s.recv(65536):
                break
        except (ConnectionResetError, TimeoutError):
            break
    return status, time.monotonic() - tic


def test_valid_request_over_a_raw_socket(server):
    port, _ = server
    status, data = request(port, valid())
    assert status == 200 and b'"predictions":[3]' in data


def test_content_length_with_transfer_encoding_is_400_and_closed(server):
    port, metrics = server
    before = metrics.closed["malformed"]
    smuggled = http_request("GET", "/v1/info", AUTH)
    with connect(port) as s:
        s.sendall(valid({"Transfer-Encoding": "chunked"})[:-len(BODY)] + b"0\r\n\r\n" + smuggled)
        status, data = read_response(s)
        assert status == 400 and b"Transfer-Encoding" in data
        assert b"connection: close" in data.lower()
        assert closed_after(s)[0] is None  # the smuggled GET is never answered
    assert metrics.closed["malformed"] == before + 1


def test_body_shorter_than_its_content_length_is_408_at_the_deadline(server):
    port, _ = server
    with connect(port) as s:
        s.sendall(valid()[:-10])
        status, held = closed_after(s)
    assert status == 408
    assert LIMITS.body_timeout - 0.1 < held < LIMITS.body_timeout + 1.0


def test_headers_with_no_end_are_cut_off(server):
    port, metrics = server
    before = metrics.closed["header_timeout"]
    with connect(port) as s:
        s.sendall(b"POST /v1/split HTTP/1.1\r\nHost: x\r\n")
        for _ in range(6):  # one byte every 0.25 s does not reset the deadline
            time.sleep(0.25)
            try:
                s.send(b"X")
            except OSError:
                break
        status, held = closed_after(s)
    assert status is None and held < 1.0
    assert metrics.closed["header_timeout"] > before
    with connect(port) as s:  # endless headers sent fast hit the size limit
        try:
            for _ in range(LIMITS.max_header_bytes // 1000 + 2):
                s.sendall(b"POST /v1/split HTTP/1.1\r\n" if _ == 0 else b"X-Pad: " + b"a" * 992
                          + b"\r\n")
        except OSError:
            pass
        assert closed_after(s)[0] == 400


def test_body_drained_after_an_early_401_is_closed_at_the_deadline(server):
    port, _ = server
    with connect(port) as s:
        s.sendall(http_request("POST", "/v1/split", {"Content-Type": MEDIA_TYPE,
                                                     "Content-Length": "4096"}, b"\0" * 10))
        status, _ = read_response(s)
        assert status == 401
        tic = time.monotonic()
        while time.monotonic() - tic < 5:
            try:
                s.send(b"\0")
            except OSError:
                break
            time.sleep(0.1)
        held = time.monotonic() - tic
    assert held < LIMITS.body_timeout + BODY_GRACE_S + 0.5


def test_client_leaving_mid_body_is_one_log_line_and_not_a_500(server, caplog):
    port, metrics = server
    with caplog.at_level(logging.INFO):
        with connect(port) as s:
            s.sendall(valid()[:-10])
            time.sleep(0.2)
        deadline = time.monotonic() + 5
        while not metrics.disconnects["/v1/split"] and time.monotonic() < deadline:
            time.sleep(0.02)
    assert metrics.disconnects["/v1/split"] == 1
    assert not [k for k in metrics.requests if k[1] >= 500]
    lines = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", headers=AUTH).text
    assert 'client_disconnects_total{path="/v1/split"} 1' in text
    assert 'status="500"' not in text


@pytest.mark.parametrize("clients,cap", [
    (200, 150),
    pytest.param(1000, 1024, marks=pytest.mark.slow),
])
def test_server_keeps_answering_while_slow_clients_hold_connections(clients, cap):
    """Slow clients, a quarter of each kind: the server keeps answering valid clients (at
    a cap below the attack it evicts slow ones rather than refuse them) and closes every
    slow one within its deadline."""
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2 * clients + 100:
        pytest.skip(f"ulimit -n is too low for {clients} clients and their server")
    limits = replace(LIMITS, max_connections=cap)
    app = create_app(fake_service(), TOKEN, max_payload=4096, body_timeout=limits.body_timeout)
    metrics = app.state.metrics
    with live_server(app, limits) as port:
        url = f"http://127.0.0.1:{port}"
        quiet = probe(url, TOKEN, BODY, 20)
        with SlowClients(port, clients, TOKEN, tick=0.2, give_up_s=15) as attack:
            during = probe(url, TOKEN, BODY, 40, pause=0.01)
            assert attack.wait_closed(limits.body_timeout + BODY_GRACE_S + 5)
        after = probe(url, TOKEN, BODY, 5)
    assert quiet["statuses"] == {200: 20} and during["statuses"] == {200: 40}, during
    assert after["statuses"] == {200: 5}
    assert attack.connect_errors == 0 and attack.still_open == 0
    assert sum(len(v) for v in attack.held.values()) == clients
    deadline = max(limits.header_timeout, limits.body_timeout + BODY_GRACE_S)
    assert all(max(attack.held[kind]) < deadline + 1.5 for kind in KINDS), attack.held
    assert attack.answers["slow body"].get("408", 0) > 0
    assert attack.answers["slow body, no token"].get("401", 0) > 0
    assert metrics.closed["header_timeout"] > 0
    assert (metrics.closed["evicted"] > 0) == (clients > cap)
    assert statistics.median(during["ms"]) < 250, during["ms"]


def test_at_the_cap_with_every_connection_busy_a_new_one_is_503():
    limits = ConnectionLimits(header_timeout=2.0, body_timeout=2.0, max_connections=2)
    app = create_app(fake_service(), TOKEN, max_payload=4096, body_timeout=2.0)
    with live_server(app, limits) as port:
        busy = [connect(port) for _ in range(2)]
        for s in busy:
            s.sendall(valid()[:-10])
        time.sleep(0.2)
        status, data = request(port, valid())
        assert status == 503 and b"in progress" in data
        assert app.state.metrics.closed["refused"] == 1
        for s in busy:
            s.close()
        time.sleep(0.2)
        assert request(port, valid())[0] == 200

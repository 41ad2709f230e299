"""A real uvicorn server process on 127.0.0.1 answering the real device client, with the
answers checked against the same computation done locally."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import torch

from edgedistill.errors import UsageError
from edgedistill.split.client import SplitClient
from edgedistill.split.evaluate import wire_roundtrip
from edgedistill.split.images import normalize_uint8
from edgedistill.split.measure import calibrate_on_server, run_plan
from edgedistill.split.model import load_split, read_meta
from edgedistill.split.shaper import Link


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(split_run, token_file):
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgedistill.split.cli", "serve", str(split_run), "--host",
         "127.0.0.1", "--port", str(port), "--token-file", str(token_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.stdout.read()}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("server did not come up in 60 s")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_real_client_gets_the_locally_computed_answer(split_run, server, token_file):
    meta = read_meta(split_run)
    images = np.random.default_rng(0).integers(0, 256, (4, *meta["input_shape"]), np.uint8)
    model = load_split(split_run / meta["chosen"])
    with torch.no_grad():
        z = model.device_part(torch.from_numpy(normalize_uint8(images, meta["mean"],
                                                               meta["std"]))).numpy()
        zq, sizes = wire_roundtrip(z, False, meta["wire"]["compression"])
        expected = model.server_part()(torch.from_numpy(zq)).argmax(1).tolist()
    token = token_file.read_text().strip()
    with SplitClient(split_run, server, token) as client:
        got = [client.infer(images[i:i + 1]) for i in range(4)]
        batch = client.infer(images)
        sent = client.classify(images[0], "png")
    assert [g["predictions"][0] for g in got] == expected
    assert batch["predictions"] == expected
    assert [g["bytes"]["payload"] for g in got] == sizes
    for g in got:
        t = g["timing_ms"]
        assert set(t) == {"head", "encode", "network", "queue", "tail", "total"}
        assert t["total"] >= t["head"] + t["encode"] + t["tail"]
        assert g["bytes"]["request"] > g["bytes"]["payload"] and g["bytes"]["response"] > 100
    with torch.no_grad():
        x = torch.from_numpy(normalize_uint8(images[:1], meta["mean"], meta["std"]))
        assert sent["predictions"] == model.teacher(x).argmax(1).tolist()


def test_real_server_refuses_bad_tokens_and_bodies(split_run, server, token_file):
    for auth in ({}, {"Authorization": "Bearer " + "x" * 43}):
        r = httpx.post(server + "/v1/split", content=b"\0" * 10,
                       headers={"Content-Type": "application/octet-stream", **auth})
        assert r.status_code == 401
    r = httpx.post(server + "/v1/split", content=b"\0" * 10, headers={
        "Content-Type": "application/octet-stream",
        "Authorization": f"Bearer {token_file.read_text().strip()}"})
    assert r.status_code == 400 and "magic" in r.json()["error"]
    with SplitClient(split_run, server, "y" * 43) as client:
        with pytest.raises(UsageError, match="401"):
            client.infer(np.zeros((1, *client.input_shape), np.uint8))


def test_shaped_link_slows_the_request_as_modelled(split_run, server, token_file):
    image = np.zeros((1, *read_meta(split_run)["input_shape"]), np.uint8)
    token = token_file.read_text().strip()
    with SplitClient(split_run, server, token) as fast, \
            SplitClient(split_run, server, token, link=Link(0.1, delay_ms=20)) as slow:
        fast.infer(image)
        base = fast.infer(image)
        shaped = slow.infer(image)
    wire_ms = 8 * (shaped["bytes"]["request"] + shaped["bytes"]["response"]) / 100
    extra = shaped["timing_ms"]["network"] - base["timing_ms"]["network"]
    assert wire_ms + 40 - 15 < extra < wire_ms + 40 + 60, (extra, wire_ms)


def test_overhead_is_calibrated_on_real_requests(split_run, server, token_file):
    images = np.random.default_rng(1).integers(0, 256, (3, *read_meta(split_run)["input_shape"]),
                                                np.uint8)
    token = token_file.read_text().strip()
    got = calibrate_on_server(split_run, server, token, images)
    assert got["requests"] == 60
    # loopback HTTP through two Python stacks: more than nothing, far less than a second
    for key in ("overhead_ms", "split_ms", "classify_ms"):
        assert 0.05 < got[key] < 1000, got
    from edgedistill.split.planner import ComputeProfile

    result = run_plan(split_run, ComputeProfile(), ComputeProfile(), [1.0], server_url=server,
                      token=token, out=split_run / "plan_calibrated")
    calibration = result["measured"]["request_overhead"]
    assert calibration["method"] == "requests"
    assert result["settings"]["rpc_overhead_ms"] == round(calibration["overhead_ms"], 3)

"""The FastAPI app in process, with a stand-in model: auth, limits, strict validation
(every malformed body is a 4xx, never a 5xx), metrics, and batching of concurrent calls."""

from __future__ import annotations

import asyncio
import io
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from edgedistill.split.batching import Batcher, Overloaded
from edgedistill.split.quantize import quantize
from edgedistill.split.server import create_app
from edgedistill.split.service import SplitService
from edgedistill.split.wire import MEDIA_TYPE, encode
from tests.split.test_wire import BAD

TOKEN = "t" * 32
Z_SHAPE = (2, 4, 4)


def fake_service() -> SplitService:
    """Logits: class = round(mean of the input) mod 10, so answers can be checked."""
    def logits(x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(x), 10), np.float32)
        out[np.arange(len(x)), np.rint(x.reshape(len(x), -1).mean(1)).astype(int) % 10] = 1
        return out

    return SplitService("c2", Z_SHAPE, (1, 8, 8), [0.0], [1 / 255], [str(i) for i in range(10)],
                        logits, logits, "torch")


@pytest.fixture(scope="module")
def client():
    app = create_app(fake_service(), TOKEN, max_payload=4096, max_batch=4)
    with TestClient(app) as c:
        c.headers["Authorization"] = f"Bearer {TOKEN}"
        yield c


def post(client, body: bytes, kind: str = MEDIA_TYPE, path: str = "/v1/split", **kw):
    return client.post(path, content=body, headers={"Content-Type": kind, **kw})


def test_split_answers_with_predictions_and_timing(client):
    z = np.full((3, *Z_SHAPE), 7.0, np.float32)
    r = post(client, encode(quantize(z), "zlib"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictions"] == [7, 7, 7]
    assert set(body["timing_ms"]) == {"decode", "queue", "compute"}
    assert "logits" not in body
    assert len(post(client, encode(z[:1]), path="/v1/split?logits=true").json()["logits"]) == 1


def test_auth_is_required_and_checked(client):
    z = encode(quantize(np.zeros((1, *Z_SHAPE), np.float32)))
    for headers in ({"Authorization": ""}, {"Authorization": "Basic abc"},
                    {"Authorization": "Bearer wrong-token-wrong-token-wrong"},
                    {"Authorization": f"Bearer {TOKEN}x"}):
        r = client.post("/v1/split", content=z, headers={"Content-Type": MEDIA_TYPE, **headers})
        assert r.status_code == 401 and "WWW-Authenticate" in r.headers
        assert "token" in r.json()["error"]
        assert client.get("/metrics", headers=headers).status_code == 401
        assert client.get("/v1/info", headers=headers).status_code == 401
    assert client.get("/health", headers={"Authorization": ""}).json() == {"status": "ok"}


@pytest.mark.parametrize("name", list(BAD))
def test_malformed_wire_messages_are_4xx(client, name):
    r = post(client, BAD[name][0] or b"x")
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.json()["error"]


def test_fuzzed_bodies_never_cause_a_server_error(client):
    rng = np.random.default_rng(0)
    good = encode(quantize(np.ones((1, *Z_SHAPE), np.float32)), "zlib")
    for _ in range(150):
        data = bytearray(good)
        for pos in rng.integers(0, len(data), rng.integers(1, 4)):
            data[pos] = int(rng.integers(0, 256))
        r = post(client, bytes(data))
        assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text)


@pytest.mark.parametrize("z,status,needle", [
    (np.zeros((1, 3, 4, 4), np.float32), 422, "does not fit"),
    (np.zeros((2, 4, 4), np.float32), 422, "does not fit"),
    (np.zeros((5, *Z_SHAPE), np.float32), 413, "limit"),
])
def test_wrong_shapes_are_422_or_413(client, z, status, needle):
    r = post(client, encode(z))
    assert r.status_code == status and needle in r.json()["error"]


def test_limits_and_media_types(client):
    r = post(client, b"\0" * 5000)
    assert r.status_code == 413
    r = client.post("/v1/split", content=iter([b"\0" * 3000, b"\0" * 3000]),
                    headers={"Content-Type": MEDIA_TYPE})
    assert r.status_code == 413
    assert post(client, b"abc", kind="text/plain").status_code == 415
    assert post(client, b"").status_code == 400
    assert post(client, b"abc", **{"Content-Length": "x"}).status_code == 400


def test_classify_takes_png_and_jpeg_of_the_right_size(client):
    def png(size, mode="L", fmt="PNG"):
        buf = io.BytesIO()
        Image.new(mode, (size, size), 3).save(buf, fmt)
        return buf.getvalue()

    assert post(client, png(8), "image/png", "/v1/classify").json()["predictions"] == [3]
    assert post(client, png(8, "RGB", "JPEG"), "image/jpeg", "/v1/classify").status_code == 200
    assert post(client, png(9), "image/png", "/v1/classify").status_code == 422
    assert post(client, b"\x89PNG junk", "image/png", "/v1/classify").status_code == 400
    gif = io.BytesIO()
    Image.new("L", (8, 8)).save(gif, "GIF")
    assert post(client, gif.getvalue(), "image/png", "/v1/classify").status_code == 400


def test_info_and_metrics(client):
    for i in range(3):
        assert client.get(f"/random/{i}").status_code == 404
    info = client.get("/v1/info").json()
    assert info["bottleneck_shape"] == list(Z_SHAPE) and info["max_batch"] == 4
    text = client.get("/metrics").text
    assert 'edgedistill_split_requests_total{path="/v1/split",status="200"}' in text
    assert 'status="401"' in text and "edgedistill_split_batches_total" in text
    assert 'path="other",status="404"} 3' in text and "random" not in text


def test_model_failure_is_a_500_without_internals():
    def broken(x):
        raise RuntimeError("secret internals")

    service = fake_service()
    service.run_tail = broken
    with TestClient(create_app(service, TOKEN), raise_server_exceptions=False) as c:
        r = c.post("/v1/split", content=encode(np.zeros((1, *Z_SHAPE), np.float32)),
                   headers={"Content-Type": MEDIA_TYPE, "Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 500 and "secret" not in r.text


def test_batcher_groups_concurrent_requests():
    calls = []

    def slow(x):
        calls.append(len(x))
        time.sleep(0.05)
        return x * 2

    async def main():
        batcher = Batcher(slow, max_batch=8, max_wait_ms=0)
        await batcher.start()
        results = await asyncio.gather(*[batcher.submit(np.full((1, 2), i, np.float32))
                                         for i in range(12)])
        await batcher.stop()
        return results

    results = asyncio.run(main())
    assert [r[0][0, 0] for r in results] == [2.0 * i for i in range(12)]
    assert sum(calls) == 12 and max(calls) == 8 and len(calls) < 12
    assert max(r[1]["batch_size"] for r in results) == 8


def test_batcher_refuses_when_the_queue_is_full():
    async def main():
        batcher = Batcher(lambda x: x, max_batch=2, max_queue=2)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(np.zeros((2, 1))))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await batcher.submit(np.zeros((1, 1)))
        await first
        await batcher.stop()

    asyncio.run(main())


def test_codec_field_over_http_old_messages_and_entropy_without_a_model(client):
    import struct

    from edgedistill.split.wire import encode_entropy

    z = np.full((1, *Z_SHAPE), 3.0, np.float32)
    new = encode(quantize(z), "zlib")
    old = new[:4] + bytes([1, new[5], new[6] | (new[7] << 1)]) + new[8:]  # version 1 layout
    assert old[7] == len(Z_SHAPE) + 1
    for body in (new, old):
        r = post(client, body)
        assert r.status_code == 200 and r.json()["predictions"] == [3], r.text
    r = post(client, encode_entropy([b"\x01\x02"], (1, *Z_SHAPE)))
    assert r.status_code == 415 and "no entropy model" in r.json()["error"]
    bad = new[:7] + struct.pack("B", 9) + new[8:]
    r = post(client, bad)
    assert r.status_code == 400 and "unknown codec 9" in r.json()["error"]
    assert client.get("/v1/info").json()["codecs"] == ["none", "zlib", "zstd"]

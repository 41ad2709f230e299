"""A few hundred malformed requests over real sockets against the real server and the
real tiny split model: bad request lines and headers, ambiguous framing, wrong
lengths, bad dtype/shape, NaN/inf, truncated and oversize bodies, broken images. None
may be answered 5xx, and valid requests must still be served afterwards."""

from __future__ import annotations

import io
import socket
import struct

import numpy as np
import pytest
from PIL import Image

from edgedistill.split.connections import ConnectionLimits
from edgedistill.split.quantize import quantize
from edgedistill.split.server import create_app
from edgedistill.split.service import SplitService
from edgedistill.split.wire import MEDIA_TYPE, encode
from tests.split.live_server import connect, http_request, live_server, read_response, request
from tests.split.test_wire import BAD, _raw

TOKEN = "f" * 32
MAX_PAYLOAD = 8192
LIMITS = ConnectionLimits(header_timeout=1.0, body_timeout=1.0, keep_alive=1.0,
                          max_connections=64)


@pytest.fixture(scope="module")
def server(split_run):
    service = SplitService.from_run(split_run, backend="torch")
    app = create_app(service, TOKEN, max_payload=MAX_PAYLOAD, max_batch=4,
                     body_timeout=LIMITS.body_timeout)
    with live_server(app, LIMITS) as port:
        yield port, service, app.state.metrics


def post(path: str, body: bytes, kind: str = MEDIA_TYPE, **headers: str) -> bytes:
    base = {"Authorization": f"Bearer {TOKEN}", "Content-Type": kind,
            "Content-Length": str(len(body))}
    return http_request("POST", path, {**base, **headers}, body)


def header_cases(good: bytes, rng) -> tuple[list[bytes], list[bytes]]:
    """Request lines and headers an HTTP library would refuse to send: (those that must be
    refused, mutations that may happen to stay valid)."""
    line, _, rest = good.partition(b"\r\n")
    head, _, body = rest.partition(b"\r\n\r\n")
    cases = [
        b"GARBAGE\r\n\r\n", b"\r\n\r\n", b"POST\r\n\r\n", b"POST /v1/split HTTP/9.9\r\n\r\n",
        b"POST /v1/split HTTP/1.1\r\n\r\n",  # no Host
        b"P\x00ST /v1/split HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/split?logits=maybe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/split HTTP/1.1\nHost: x\n\n",
        line + b"\r\n" + head + b"\r\nContent-Length: 3\r\n\r\n" + body,  # two lengths
        line + b"\r\n" + head + b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        line + b"\r\n" + head.replace(b"Content-Length", b"Transfer-Encoding: gzip\r\nX")
        + b"\r\n\r\n" + body,
        line + b"\r\n" + head + b"\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n" + body,
        line + b"\r\n" + head + b"\r\nX-Bad\x00Name: v\r\n\r\n" + body,
        line + b"\r\n" + head + b"\r\nX-Bad: v\x00v\r\n\r\n" + body,
        line + b"\r\n" + head + b"\r\n: empty-name\r\n\r\n" + body,
        line + b"\r\n" + head + b"\r\nNoColon\r\n\r\n" + body,
    ]
    for length in (b"-1", b"x", b"1e3", b"99999999999999999999", b" ", b"0x10", b"+5"):
        cases.append(good.replace(f"Content-Length: {len(body)}".encode(),
                                  b"Content-Length: " + length))
    for kind in (b"", b"text/plain", b"image/gif", b"application/json; x=\xff"):
        cases.append(good.replace(b"Content-Type: " + MEDIA_TYPE.encode(),
                                  b"Content-Type: " + kind))
    for auth in (b"", b"Bearer", b"Bearer ", b"bearer " + b"f" * 31, b"Basic Zm9v",
                 b"Bearer " + b"\xff" * 32, b"Bearer " + TOKEN.encode() + b" extra"):
        cases.append(good.replace(f"Authorization: Bearer {TOKEN}".encode(),
                                  b"Authorization: " + auth))
    mutated = [line + b"\r\n" + head + b"\r\n folded: value\r\n\r\n" + body,
               good.replace(MEDIA_TYPE.encode(), b"application/octet-stream;;;")]
    for _ in range(100):  # random bytes flipped in the request line and headers, not in
        data = bytearray(good)  # their final CRLF CRLF (a request with no end is timed out)
        for pos in rng.integers(0, len(good) - len(body) - 4, rng.integers(1, 4)):
            data[pos] = int(rng.integers(0, 256))
        mutated.append(bytes(data))
    return cases, mutated


def body_cases(service: SplitService, rng) -> tuple[list[bytes], list[bytes]]:
    """Well-framed requests whose bodies are wrong: (must be refused, may stay valid)."""
    shape = service.bottleneck_shape
    n = int(np.prod(shape))
    good = encode(quantize(rng.standard_normal((1, *shape)).astype(np.float32)), "zlib")
    cases = [post("/v1/split", message or b"x") for message, _ in BAD.values()]
    for dims in [(1, *shape[:-1]), (1, shape[0] + 1, *shape[1:]), (5, *shape), shape,
                 (1, 1, 1, 1, 1, 1)]:
        cases.append(post("/v1/split", encode(np.zeros(dims, np.float32))))
    for value in (np.nan, np.inf, -np.inf, 3.3e38):
        for dtype in (np.float16, np.float32):
            z = np.full((1, *shape), value, np.float32).astype(dtype)
            cases.append(post("/v1/split?logits=true", encode(z)))
    for scale in (1e37, 1.3e36, float("inf"), float("nan"), 0.0, -1.0):
        cases.append(post("/v1/split?logits=true",
                          _raw(dims=(1, *shape), scales=(scale,), payload=b"\xff" * n)))
    mutated = [post("/v1/split?logits=true",  # the smallest scale, subnormal: valid
                    _raw(dims=(1, *shape), scales=(1e-45,), payload=b"\xff" * n))]
    for cut in rng.integers(1, len(good), 20):
        cases.append(post("/v1/split", good[:cut]))
    for _ in range(80):
        data = bytearray(good)
        for pos in rng.integers(0, len(good), rng.integers(1, 4)):
            data[pos] = int(rng.integers(0, 256))
        mutated.append(post("/v1/split?logits=true", bytes(data)))
    cases += [post("/v1/split", b"\0" * (MAX_PAYLOAD + 1)),
              post("/v1/split", b"\0" * 10, **{"Content-Length": str(10 * MAX_PAYLOAD)})]
    c, h, w = service.input_shape
    for fmt, kind in (("PNG", "image/png"), ("JPEG", "image/jpeg")):
        buf = io.BytesIO()
        Image.new("L" if c == 1 else "RGB", (w, h), 7).save(buf, fmt)
        image = buf.getvalue()
        cases += [post("/v1/classify", image[:cut], kind)
                  for cut in rng.integers(1, len(image), 15)]
        cases.append(post("/v1/classify", bytes(rng.integers(0, 256, 300, np.uint8)), kind))
        mutated += [post("/v1/classify", image, "image/png" if fmt == "JPEG" else "image/jpeg"),
                    post("/v1/classify", image + b"junk", kind)]
        big = io.BytesIO()
        Image.new("L", (w + 1, h), 7).save(big, fmt)
        cases.append(post("/v1/classify", big.getvalue(), kind))
    return cases, mutated


def send_half_closed(port: int, raw: bytes) -> tuple[int | None, bytes]:
    """Send ``raw`` (shorter than its Content-Length) and close the sending side."""
    with connect(port, timeout=LIMITS.body_timeout + 3) as s:
        s.sendall(raw)
        s.shutdown(socket.SHUT_WR)
        return read_response(s)


def test_malformed_requests_are_never_5xx_and_the_server_keeps_serving(server):
    port, service, metrics = server
    rng = np.random.default_rng(0)
    shape = service.bottleneck_shape
    good = post("/v1/split", encode(quantize(np.ones((1, *shape), np.float32))))
    assert request(port, good)[0] == 200
    (bad_headers, odd_headers), (bad_bodies, odd_bodies) = (header_cases(good, rng),
                                                            body_cases(service, rng))
    cases = bad_headers + bad_bodies
    assert len(cases) + len(odd_headers) + len(odd_bodies) >= 300
    answers: dict[int | None, int] = {}
    for raw in cases:
        status, data = request(port, raw, timeout=LIMITS.header_timeout + 3)
        assert status is not None and 400 <= status < 500, (status, raw[:200], data[:300])
        answers[status] = answers.get(status, 0) + 1
    for raw in odd_headers + odd_bodies:
        status, data = request(port, raw, timeout=LIMITS.header_timeout + 3)
        assert status is not None and status < 500, (status, raw[:200], data[:300])
        answers[status] = answers.get(status, 0) + 1
    truncated = [good[:-cut] for cut in (1, 5, len(good) // 2)]
    truncated.append(post("/v1/split", struct.pack("<I", 1)) + b"more than nothing")
    for raw in truncated:
        status, _ = send_half_closed(port, raw)
        assert status is None or 400 <= status < 500
    assert {400, 401, 413, 415, 422} <= set(answers), answers
    assert not [key for key in metrics.requests if key[1] >= 500], metrics.requests
    assert metrics.disconnects, "half-closed truncated bodies count as disconnects"
    for _ in range(3):
        status, data = request(port, good)
        assert status == 200 and b"predictions" in data

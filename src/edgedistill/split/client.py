"""The device side: run the head in ONNX Runtime, quantize, send, get the prediction.

Each call returns its timing breakdown: ``head`` (normalize + encoder), ``encode``
(quantize or entropy-code, + wire format), ``network`` (round trip minus the time the
server reports for itself, so it holds transmission, delay and both HTTP stacks),
``queue`` and ``tail`` (server side: waiting for a batch, decoder + tail) and
``total`` (wall time of the call). Byte counts are exact: the wire message, the
whole request (request line + headers + body) and the whole response.

``device_slowdown`` emulates a device k times slower than this host: each device step
lasts k times the CPU time it took here (the planner's model of a ``ComputeProfile``
with ``slowdown: k``; the rest is waited out with ``precise_sleep``), so measured runs
can be compared with plans for slow devices on a fast host. CPU time, not wall time:
on a shared host another process can take the core in the middle of a step (with two
busy processes on the 2-core benchmark host, 6 to 13 of 40 resnet56 steps took over
1.3x their CPU time, up to 4.2x; ``benchmarks/split_emulation.py``), and that wait is
no part of the device; scaled with the step it would come back k-fold.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from edgedistill.errors import UsageError
from edgedistill.split.images import encode_image, normalize_uint8, to_array
from edgedistill.split.model import bottleneck_dir, read_meta
from edgedistill.split.quantize import quantize
from edgedistill.split.shaper import Link, precise_sleep
from edgedistill.split.wire import MEDIA_TYPE, decode, encode, encode_entropy


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1e3


def request_bytes(request: httpx.Request, body_len: int) -> int:
    line = len(f"{request.method} {request.url.raw_path.decode()} HTTP/1.1\r\n")
    return line + sum(len(k) + len(v) + 4 for k, v in request.headers.raw) + 2 + body_len


def response_bytes(response: httpx.Response) -> int:
    line = len(f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n")
    headers = sum(len(k) + len(v) + 4 for k, v in response.headers.raw)
    return line + headers + 2 + len(response.content)


def bottleneck_codec(run_dir: str | Path, name: str, wire: dict):
    """``(to_message, from_message)`` of bottleneck ``name``: z (N, C, H, W) -> wire bytes
    and back to values, by its codec (``split.json``): 8-bit codes with the run's wire
    settings, or the entropy bottleneck's bitstreams."""
    row = next(b for b in read_meta(run_dir)["bottlenecks"] if b["name"] == name)
    if row.get("codec", "8bit") == "entropy":
        from edgedistill.split.entropy import EntropyCodec

        codec = EntropyCodec.from_dir(Path(run_dir) / name)

        def from_entropy(message: bytes) -> np.ndarray:
            got = decode(message)
            return codec.decode(got.streams, got.shape)

        return (lambda z: encode_entropy(codec.encode(z), z.shape)), from_entropy
    return (lambda z: encode(quantize(z, wire["per_channel"]), wire["compression"],
                             wire.get("level"))), (lambda message: decode(message).to_float())


class SplitClient:
    """One device talking to one edge server about one bottleneck of a split run."""

    def __init__(self, run_dir: str | Path, server: str, token: str,
                 bottleneck: str | None = None, per_channel: bool | None = None,
                 compression: str | None = None, link: Link | None = None,
                 threads: int = 1, timeout: float = 30.0, device_slowdown: float = 1.0):
        from edgedistill.export.onnx import session

        meta = read_meta(run_dir)
        self.bottleneck = bottleneck_dir(run_dir, bottleneck)
        self.head = session(self.bottleneck / "head.onnx", threads)
        self.mean, self.std = meta["mean"], meta["std"]
        self.input_shape = tuple(meta["input_shape"])
        self.classes = meta["classes"]
        wire = dict(meta["wire"])
        if per_channel is not None:
            wire["per_channel"] = per_channel
        if compression is not None:
            wire["compression"] = compression
        self.to_message = bottleneck_codec(run_dir, self.bottleneck.name, wire)[0]
        self.link = link
        if device_slowdown < 1:
            raise UsageError(f"device_slowdown must be >= 1, got {device_slowdown}")
        self.slowdown = device_slowdown
        nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self.http = httpx.Client(base_url=server.rstrip("/"), timeout=timeout, transport=nodelay,
                                 headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SplitClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _device_ms(self, since: float, cpu_since: float) -> float:
        """Time of the device work since ``since`` (``perf_counter``) and ``cpu_since``
        (``thread_time``): its wall time on the device itself (slowdown 1); with a
        slowdown k, k times its CPU time here, the step made to last that long."""
        if self.slowdown == 1:
            return _ms(since)
        device = (time.thread_time() - cpu_since) * 1e3 * self.slowdown
        precise_sleep((device - _ms(since)) / 1e3)
        return device

    def _post(self, path: str, body: bytes, content_type: str) -> tuple[dict, float, int, int]:
        headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        request = self.http.build_request("POST", path, headers=headers, content=body)
        sent = request_bytes(request, len(body))
        if self.link:
            paced = self.link.upload(sent - len(body), body)
            request = self.http.build_request("POST", path, headers=headers, content=paced)
        tic = time.perf_counter()
        response = self.http.send(request)
        received = response_bytes(response)
        if self.link:
            self.link.download(received)
        rtt = _ms(tic)
        if response.status_code != 200:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise UsageError(f"server answered {response.status_code}: {message}")
        return response.json(), rtt, sent, received

    def infer(self, images: np.ndarray) -> dict[str, Any]:
        """Predictions for uint8 images (N, C, H, W) through head, wire, server and tail."""
        from edgedistill.export.onnx import run_session

        if images.dtype != np.uint8 or images.shape[1:] != self.input_shape:
            raise UsageError(f"images must be uint8 (N, {', '.join(map(str, self.input_shape))})"
                             f", got {images.dtype} {images.shape}")
        start, cpu = time.perf_counter(), time.thread_time()
        z = run_session(self.head, normalize_uint8(images, self.mean, self.std))
        head_ms = self._device_ms(start, cpu)
        tic, cpu = time.perf_counter(), time.thread_time()
        message = self.to_message(z)
        encode_ms = self._device_ms(tic, cpu)
        answer, rtt, sent, received = self._post("/v1/split", message, MEDIA_TYPE)
        return self._result(answer, start, rtt, sent, received, len(message),
                            {"head": head_ms, "encode": encode_ms})

    def classify(self, image: np.ndarray, fmt: str = "jpeg95") -> dict[str, Any]:
        """The "send the input" alternative: one uint8 (C, H, W) image as PNG/JPEG."""
        start, cpu = time.perf_counter(), time.thread_time()
        data = encode_image(image, fmt)
        encode_ms = self._device_ms(start, cpu)
        kind = "image/png" if fmt == "png" else "image/jpeg"
        answer, rtt, sent, received = self._post("/v1/classify", data, kind)
        return self._result(answer, start, rtt, sent, received, len(data),
                            {"head": 0.0, "encode": encode_ms})

    def _result(self, answer: dict, start: float, rtt: float, sent: int, received: int,
                payload: int, local: dict[str, float]) -> dict[str, Any]:
        server = answer["timing_ms"]
        server_ms = server["decode"] + server["queue"] + server["compute"]
        timing = {**local, "network": rtt - server_ms, "queue": server["queue"],
                  "tail": server["decode"] + server["compute"], "total": _ms(start)}
        return {"predictions": answer["predictions"],
                "labels": [self.classes[p] for p in answer["predictions"]],
                "timing_ms": timing, "batch_size": answer["batch_size"],
                "bytes": {"payload": payload, "request": sent, "response": received}}


def load_images(paths: list[str | Path], input_shape) -> np.ndarray:
    """Image files as uint8 (N, C, H, W), converted and resized to the model's input."""
    from PIL import Image

    c, h, w = input_shape
    out = []
    for path in paths:
        try:
            with Image.open(path) as img:
                out.append(to_array(img, c, (h, w)))
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise UsageError(f"cannot read image {path}: {err}") from None
    if not out:
        raise UsageError("give at least one image file")
    return np.stack(out)

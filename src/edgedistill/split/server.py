"""The edge server: FastAPI app that runs the tail on bottlenecks sent by devices.

Endpoints: ``GET /health`` (no auth, for load balancers), ``GET /v1/info`` and
``GET /metrics`` (Prometheus text), ``POST /v1/split`` (a wire-format tensor ->
predictions of decoder + tail) and ``POST /v1/classify`` (a PNG/JPEG image -> the
whole teacher's prediction: the "send the input" alternative). Every ``/v1`` and
metrics call needs ``Authorization: Bearer <token>``, compared in constant time and
checked before the body is read. Bodies are read with a hard size cap whatever
Content-Length claims and a deadline (``body_timeout``). Errors are JSON ``{"error":
...}`` with 400 malformed, 401 auth, 408 body too slow, 413 too large, 415 wrong media
type, 422 valid message but wrong dtype/shape for this model or a model output that is
not finite, 503 overloaded; a model failure is a 500 without internals. A client that
leaves mid-request is one log line and a ``client_disconnects`` count, not an error.
``serve`` runs the app behind ``connections.guarded_protocol``: header and body
deadlines, a connection cap, and no requests with ambiguous framing.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from contextlib import asynccontextmanager

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.requests import ClientDisconnect

from edgedistill.split.batching import Batcher, Overloaded
from edgedistill.split.connections import ConnectionLimits, fit_fd_limit, uvicorn_config
from edgedistill.split.metrics import Metrics
from edgedistill.split.service import SplitService
from edgedistill.split.wire import MEDIA_TYPE, VERSION, WireError, decode

log = logging.getLogger("edgedistill.split.server")
TENSOR_TYPES = (MEDIA_TYPE, "application/octet-stream")
IMAGE_TYPES = ("image/png", "image/jpeg")
PATHS = {"/health", "/metrics", "/v1/info", "/v1/split", "/v1/classify"}  # metric labels


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def create_app(service: SplitService, token: str, max_payload: int = 1 << 20,
               max_batch: int = 32, max_wait_ms: float = 0.0, max_queue: int = 1024,
               body_timeout: float = ConnectionLimits.body_timeout) -> FastAPI:
    """The app for one ``SplitService``; ``token`` is the bearer token clients must send."""
    if not token:
        raise ValueError("an empty token would let anyone in")
    tail = Batcher(service.run_tail, max_batch, max_wait_ms, max_queue)
    teacher = Batcher(service.run_teacher, max_batch, max_wait_ms, max_queue)
    metrics = Metrics()
    expected = token.encode()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await tail.start()
        await teacher.start()
        yield
        await tail.stop()
        await teacher.stop()

    app = FastAPI(title="edgedistill split server", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.metrics = metrics

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse({"error": err.message}, err.status, headers=err.headers)

    @app.middleware("http")
    async def count(request: Request, call_next):
        tic = time.perf_counter()
        path = request.url.path if request.url.path in PATHS else "other"
        try:
            response = await call_next(request)
        except ClientDisconnect:
            client = request.client.host if request.client else "?"
            log.warning("client %s disconnected before its request to %s was complete",
                        client, path)
            metrics.disconnect(path)
            return JSONResponse({"error": "client disconnected"}, 400)  # never sent
        except Exception:
            log.exception("unhandled error on %s", request.url.path)
            response = JSONResponse({"error": "internal server error"}, 500)
        metrics.request(path, response.status_code, time.perf_counter() - tic)
        return response

    def authorize(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise ApiError(401, "missing bearer token (send 'Authorization: Bearer <token>')",
                           {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.strip().encode(), expected):
            raise ApiError(401, "invalid token",
                           {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    async def read_body(request: Request, allowed: tuple[str, ...]) -> bytes:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in allowed:
            raise ApiError(415, f"content type {kind or '(none)'!r} is not accepted here; "
                                f"send one of: {', '.join(allowed)}")
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_payload):
            raise ApiError(413 if length.isdigit() else 400,
                           f"body of {length} bytes; the limit is {max_payload}")
        chunks, size = [], 0
        try:
            async with asyncio.timeout(body_timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > max_payload:
                        raise ApiError(413, f"body exceeds the limit of {max_payload} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise ApiError(408, f"body not received within {body_timeout:g} s ({size} bytes "
                                "came)", {"Connection": "close"}) from None
        if not size:
            raise ApiError(400, "empty body")
        metrics.received(size)
        return b"".join(chunks)

    async def run(batcher: Batcher, x: np.ndarray, decode_ms: float, want_logits: bool):
        try:
            out, timing = await batcher.submit(x)
        except Overloaded as err:
            raise ApiError(503, f"server overloaded: {err}", {"Retry-After": "1"}) from None
        metrics.batch(timing["batch_size"])
        if not np.all(np.isfinite(out)):
            raise ApiError(422, "the model's output is not finite (NaN or inf) for this input: "
                                "its values are far outside what the model was trained on")
        body = {"predictions": out.argmax(1).tolist(),
                "timing_ms": {"decode": round(decode_ms, 3),
                              "queue": round(timing["queue_ms"], 3),
                              "compute": round(timing["compute_ms"], 3)},
                "batch_size": timing["batch_size"]}
        if want_logits:
            body["logits"] = out.tolist()
        return body

    def check_batch(n: int) -> None:
        if n > max_batch:
            raise ApiError(422, f"{n} samples in one request; this server takes at most "
                                f"{max_batch}")

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/info", dependencies=[Depends(authorize)])
    async def info():
        return {"bottleneck": service.name, "bottleneck_shape": list(service.bottleneck_shape),
                "input_shape": list(service.input_shape), "classes": service.classes,
                "wire_version": VERSION, "codecs": service.codecs, "backend": service.backend, "max_batch": max_batch,
                "max_payload": max_payload}

    @app.get("/metrics", dependencies=[Depends(authorize)])
    async def prometheus():
        return PlainTextResponse(metrics.render(tail, teacher),
                                 media_type="text/plain; version=0.0.4")

    @app.post("/v1/split", dependencies=[Depends(authorize)])
    async def split(request: Request, logits: bool = False):
        body = await read_body(request, TENSOR_TYPES)
        tic = time.perf_counter()
        try:
            tensor = decode(body, max_elements=max_batch * int(np.prod(service.bottleneck_shape)))
        except WireError as err:
            raise ApiError(err.status, f"bad tensor message: {err}") from None
        shape = tensor.shape
        if len(shape) != 4 or shape[1:] != service.bottleneck_shape:
            raise ApiError(422, f"tensor shape {list(shape)} does not fit this model: expected "
                                f"[N, {', '.join(map(str, service.bottleneck_shape))}]")
        check_batch(shape[0])
        try:
            z = service.to_float(tensor)
        except WireError as err:
            raise ApiError(err.status, f"bad tensor message: {err}") from None
        return await run(tail, z, (time.perf_counter() - tic) * 1e3, logits)

    @app.post("/v1/classify", dependencies=[Depends(authorize)])
    async def classify(request: Request, logits: bool = False):
        from edgedistill.errors import UsageError
        from edgedistill.split.images import decode_image

        body = await read_body(request, IMAGE_TYPES)
        tic = time.perf_counter()
        c, h, w = service.input_shape
        try:
            image = decode_image(body, c)
        except UsageError as err:
            raise ApiError(400, str(err)) from None
        if image.shape != (c, h, w):
            raise ApiError(422, f"image is {image.shape[2]}x{image.shape[1]}; this model takes "
                                f"{w}x{h} (resize on the device, it saves bytes too)")
        x = service.normalize(image[None])
        return await run(teacher, x, (time.perf_counter() - tic) * 1e3, logits)

    return app


def serve(run_dir: str, host: str, port: int, token_file: str, bottleneck: str | None = None,
          backend: str = "onnx", threads: int | None = 1, max_payload: int = 1 << 20,
          max_batch: int = 32, max_wait_ms: float = 0.0, log_level: str = "warning",
          limits: ConnectionLimits = ConnectionLimits()) -> None:
    """Load the run's bottleneck and serve it with uvicorn until interrupted."""
    import uvicorn

    from edgedistill.split.tokens import read_token

    token = read_token(token_file)
    limits = fit_fd_limit(limits)
    service = SplitService.from_run(run_dir, bottleneck, backend, threads)
    app = create_app(service, token, max_payload, max_batch, max_wait_ms,
                     body_timeout=limits.body_timeout)
    print(f"serving {run_dir} bottleneck {service.name} {list(service.bottleneck_shape)} "
          f"({backend}) on http://{host}:{port}", flush=True)
    uvicorn.Server(uvicorn_config(app, host, port, limits, app.state.metrics.connection_closed,
                                  log_level)).run()

"""A real uvicorn server with the connection guard, in a thread, on a socket bound to
127.0.0.1 before it starts (no port race), plus raw-socket helpers for the tests that
send what an HTTP client library would refuse to send."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import uvicorn

from edgedistill.split.connections import ConnectionLimits, uvicorn_config


@contextmanager
def live_server(app, limits: ConnectionLimits):
    """Yields the port; the server stops (and its thread ends) on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn_config(app, "127.0.0.1", port, limits, app.state.metrics.connection_closed)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start in 20 s")
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_response(s: socket.socket) -> tuple[int | None, bytes]:
    """(status, whole response) read until the server closes or the socket times out;
    status None when the server closed without answering."""
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    break
    except ConnectionResetError:
        pass
    if not data.startswith(b"HTTP/1.1 "):
        return None, data
    return int(data[9:12]), data


def request(port: int, raw: bytes, timeout: float = 5.0) -> tuple[int | None, bytes]:
    """Send ``raw`` bytes on a new connection and read one response."""
    with connect(port, timeout) as s:
        s.sendall(raw)
        return read_response(s)


def http_request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1",
             *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

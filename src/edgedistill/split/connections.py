"""Connection limits for the edge server, so slow and hostile clients cannot hold it.

uvicorn's h11 server alone has no header or body deadline: its keep-alive timer is
cancelled by any byte that arrives and re-armed only after a response, so a client
that sends its headers or body a byte at a time, or a body shorter than its
Content-Length, holds a connection forever (1,100 of them, no token needed, were all
held). uvicorn's ``limit_concurrency`` does not help: once such connections fill it,
it answers 503 to every valid client. ``guarded_protocol`` is uvicorn's h11 protocol
with these limits (``ConnectionLimits``):

* headers: a request's headers must be complete ``header_timeout`` s after the
  connection opened or the previous response ended; trickling bytes does not reset it.
* body: the body must be in ``body_timeout`` s (plus ``BODY_GRACE_S``, so that the
  app's own body timeout answers 408 first) after the headers, also when the app
  answered early (401, 413) and the rest of the body is only being drained.
* count: at ``max_connections``, a new connection evicts the one that has waited
  longest without a request in progress (idle, slow headers, or a body drained after
  an early answer); only when every connection has a request in progress is the new
  one answered 503 and closed.
* framing: Content-Length together with Transfer-Encoding is a 400 and the connection
  is closed. h11 frames such a request by its chunked encoding; a proxy that frames
  it by Content-Length would forward the rest as a second, smuggled request.
* header size: more than ``max_header_bytes`` without the end of the headers is a 400
  (h11's incomplete-event limit).

Every connection the guard closes is reported by reason to ``on_close`` (the server
counts them in ``/metrics``); none is logged one by one, so an attack cannot flood
the log.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

BODY_GRACE_S = 1.0
FD_RESERVE = 64  # files the server keeps open besides its connections (models, logs, ...)
_BUSY = b'{"error": "server busy: every connection has a request in progress"}'
REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
           b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
           % (len(_BUSY), _BUSY))


@dataclass(frozen=True)
class ConnectionLimits:
    """Deadlines in seconds and the connection cap of one server (defaults for ``serve``).

    ``body_timeout`` must cover the largest body over the slowest link served: 30 s
    takes the default 1 MiB limit at 0.3 Mbit/s.
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive: float = 5.0
    max_connections: int = 1024
    max_header_bytes: int = 16 * 1024

    def __post_init__(self):
        for name in ("header_timeout", "body_timeout", "keep_alive"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_connections < 1 or self.max_header_bytes < 1024:
            raise ValueError("max_connections must be >= 1 and max_header_bytes >= 1024")


class StrictConnection(h11.Connection):
    """h11 that refuses a request with both Content-Length and Transfer-Encoding, and
    headers over ``max_header_bytes`` that arrived whole (h11 limits only headers still
    incomplete); ``refusal`` keeps the reason for the 400's body (uvicorn's is generic)."""

    refusal: str | None = None

    def __init__(self, max_header_bytes: int):
        super().__init__(h11.SERVER, max_header_bytes)
        self.max_header_bytes = max_header_bytes

    def next_event(self):
        event = super().next_event()
        if isinstance(event, h11.Request):
            names = {name for name, _ in event.headers}
            size = sum(len(k) + len(v) + 4 for k, v in event.headers) + len(event.target)
            if b"content-length" in names and b"transfer-encoding" in names:
                self.refusal = ("Content-Length together with Transfer-Encoding is refused "
                                "(ambiguous framing, as in request smuggling); send one")
            elif size > self.max_header_bytes:
                self.refusal = f"headers larger than {self.max_header_bytes} bytes"
            if self.refusal:
                raise h11.RemoteProtocolError(self.refusal)
        return event


def guarded_protocol(limits: ConnectionLimits,
                     on_close: Callable[[str], None] = lambda reason: None) -> type[H11Protocol]:
    """An ``H11Protocol`` class enforcing ``limits``; pass it as uvicorn's ``http``."""

    class GuardedH11Protocol(H11Protocol):
        def __init__(self, config, server_state, app_state, _loop=None):
            super().__init__(config, server_state, app_state, _loop)
            self.conn = StrictConnection(limits.max_header_bytes)
            self.deadline = None
            self.phase: str | None = None
            self.since = time.monotonic()

        def connection_made(self, transport) -> None:
            crowded = len(self.connections) >= limits.max_connections
            super().connection_made(transport)
            if crowded and not self._make_room():
                on_close("refused")
                transport.write(REFUSED)
                transport.close()
                return
            self._follow()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._follow()

        def on_response_complete(self) -> None:
            self.since = time.monotonic()
            super().on_response_complete()
            self._follow()

        def connection_lost(self, exc) -> None:
            self._cancel()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            on_close("malformed")
            super().send_400_response(self.conn.refusal or msg)

        def idle(self) -> bool:
            """No request in progress: closing it loses no work."""
            return self.cycle is None or self.cycle.response_complete

        def _make_room(self) -> bool:
            live = [p for p in self.connections
                    if p is not self and not p.transport.is_closing()]
            if len(live) < limits.max_connections:
                return True
            idle = [p for p in live if isinstance(p, GuardedH11Protocol) and p.idle()]
            if not idle:
                return False
            min(idle, key=lambda p: p.since)._close("evicted")
            return True

        def _follow(self) -> None:
            """(Re)arm the deadline when the client moves to headers or to the body."""
            state = self.conn.their_state
            phase = ("headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY
                     else None)
            if phase == self.phase or self.transport.is_closing():
                return
            self.phase = phase
            self._cancel()
            if phase == "headers":
                self.since = time.monotonic()
                self.deadline = self.loop.call_later(limits.header_timeout, self._close,
                                                     "header_timeout")
            elif phase == "body":
                self.deadline = self.loop.call_later(limits.body_timeout + BODY_GRACE_S,
                                                     self._close, "body_timeout")

        def _cancel(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def _close(self, reason: str) -> None:
            self._cancel()
            if not self.transport.is_closing():
                on_close(reason)
                self.transport.close()

    return GuardedH11Protocol


def fit_fd_limit(limits: ConnectionLimits) -> ConnectionLimits:
    """``limits`` with room for ``max_connections`` under the open-file limit.

    Past that limit ``accept()`` fails and every client is turned away, valid ones too,
    so the soft limit is raised (up to the hard one) or else the cap is lowered, with a
    warning.
    """
    try:
        import resource
    except ImportError:  # not POSIX: no per-process limit to fit
        return limits
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = limits.max_connections + FD_RESERVE
    if soft == resource.RLIM_INFINITY or soft >= need:
        return limits
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    except (ValueError, OSError):
        pass
    if soft >= need:
        return limits
    cap = max(1, soft - FD_RESERVE)
    print(f"warning: the open-file limit ({soft}) leaves room for {cap} connections, not "
          f"{limits.max_connections}; raise it with ulimit -n", file=sys.stderr)
    return replace(limits, max_connections=cap)


def uvicorn_config(app, host: str, port: int, limits: ConnectionLimits,
                   on_close: Callable[[str], None] = lambda reason: None,
                   log_level: str = "warning"):
    """uvicorn settings for ``app`` behind ``guarded_protocol(limits, on_close)``."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          http=guarded_protocol(limits, on_close),
                          timeout_keep_alive=limits.keep_alive,
                          h11_max_incomplete_event_size=limits.max_header_bytes)

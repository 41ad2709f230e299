"""Does the edge server keep answering valid requests while slow clients hold connections?

    .venv/bin/python -m benchmarks.split_slow_clients --run RUN --token-file TOKEN \
        [--clients 1000] [--max-connections 1024]

Starts a real ``edgedistill split serve`` process on 127.0.0.1, measures the latency of
valid ``/v1/split`` requests (the bottleneck the run's own head makes, one new
connection each, as a device that just woke up), then opens ``--clients`` sockets that
misbehave in four ways, a quarter each (``KINDS``), and measures again, spread over the
time until the server has closed the last of them; it reports how long the server held
each kind and what it answered them.
``SlowClients`` and ``probe`` are also what ``tests/split/test_slow_clients.py`` uses.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict

import httpx

KINDS = {
    "silent": "connects and sends nothing",
    "slow headers": "sends a request line, then one header byte per tick, never the end",
    "slow body": "valid token, Content-Length 4096, 10 bytes, then one byte per tick",
    "slow body, no token": "as slow body without a token: answered 401, body drained",
}
BODY_LENGTH = 4096


def _opening(kind: str, token: str) -> bytes:
    if kind == "silent":
        return b""
    if kind == "slow headers":
        return b"POST /v1/split HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    auth = f"Authorization: Bearer {token}\r\n" if kind == "slow body" else ""
    return (f"POST /v1/split HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
            "Content-Type: application/octet-stream\r\n"
            f"Content-Length: {BODY_LENGTH}\r\n\r\n").encode() + b"\0" * 10


class SlowClients:
    """``n`` misbehaving connections to 127.0.0.1:``port``, kinds in turn, all driven by
    one thread: each trickling socket gets one byte per ``tick`` s. Records when and how
    the server closed each one (``held`` seconds by kind, the status it answered)."""

    def __init__(self, port: int, n: int, token: str, tick: float = 0.5,
                 give_up_s: float = 120.0):
        self.port, self.n, self.token, self.tick, self.give_up_s = port, n, token, tick, give_up_s
        self.held: dict[str, list[float]] = defaultdict(list)
        self.answers: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.connect_errors = 0
        self.still_open = 0
        self.opened = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SlowClients:
        self._thread.start()
        if not self.opened.wait(60):
            raise RuntimeError("slow clients did not connect in 60 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def wait_closed(self, timeout: float) -> bool:
        """True when the server has closed every slow connection within ``timeout`` s."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        kinds = list(KINDS)
        for i in range(self.n):
            kind = kinds[i % len(kinds)]
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                s.sendall(_opening(kind, self.token))
            except OSError:
                self.connect_errors += 1
                continue
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, [kind, time.monotonic(), b""])
        self.opened.set()
        deadline = time.monotonic() + self.give_up_s
        next_tick = time.monotonic() + self.tick
        while sel.get_map() and not self._stop.is_set() and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=max(0.0, next_tick - time.monotonic())):
                self._read(sel, key)
            if time.monotonic() >= next_tick:
                next_tick += self.tick
                for key in list(sel.get_map().values()):
                    if key.data[0] != "silent":
                        try:
                            key.fileobj.send(b"X" if key.data[0] == "slow headers" else b"\0")
                        except OSError:
                            self._closed(sel, key)
        self.still_open = len(sel.get_map())
        for key in list(sel.get_map().values()):
            sel.unregister(key.fileobj)
            key.fileobj.close()

    def _read(self, sel, key) -> None:
        try:
            data = key.fileobj.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            key.data[2] += data
            return
        self._closed(sel, key)

    def _closed(self, sel, key) -> None:
        kind, since, got = key.data
        self.held[kind].append(time.monotonic() - since)
        answer = got[9:12].decode() if got.startswith(b"HTTP/1.1 ") else "closed, no answer"
        self.answers[kind][answer] += 1
        sel.unregister(key.fileobj)
        key.fileobj.close()


def _attack(port: int, n: int, token: str, give_up_s: float, queue) -> None:
    """``SlowClients`` in a process of its own, so that its loop over a thousand sockets
    does not take the interpreter lock from the process timing the valid requests."""
    with SlowClients(port, n, token, give_up_s=give_up_s) as attack:
        queue.put("opened")
        attack.wait_closed(give_up_s)
    queue.put({"held": dict(attack.held), "connect_errors": attack.connect_errors,
               "still_open": attack.still_open,
               "answers": {k: dict(v) for k, v in attack.answers.items()}})


def probe(url: str, token: str, body: bytes, n: int, pause: float = 0.0) -> dict:
    """``n`` valid ``/v1/split`` requests, each on a new connection: statuses, latencies
    in ms and when each started (``time.monotonic``)."""
    statuses, ms, at = defaultdict(int), [], []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
    fresh = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=url, headers=headers, limits=fresh, timeout=10) as client:
        for _ in range(n):
            tic = time.perf_counter()
            at.append(time.monotonic())
            try:
                statuses[client.post("/v1/split", content=body).status_code] += 1
            except httpx.HTTPError as err:
                statuses[type(err).__name__] += 1
            ms.append((time.perf_counter() - tic) * 1e3)
            time.sleep(pause)
    return {"statuses": dict(statuses), "ms": ms, "at": at}


def quantiles(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=100)
    return f"{statistics.median(ms):.1f} / {q[89]:.1f} / {q[98]:.1f} / {max(ms):.1f}"


def _start_server(args, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "edgedistill.split.cli", "serve", args.run, "--port", str(port),
           "--token-file", args.token_file, "--max-connections", str(args.max_connections),
           "--header-timeout", str(args.header_timeout),
           "--body-timeout", str(args.body_timeout)]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not come up in 60 s")


def _valid_body(run: str) -> bytes:
    import numpy as np

    from edgedistill.export.onnx import run_session, session
    from edgedistill.split.images import normalize_uint8
    from edgedistill.split.model import bottleneck_dir, read_meta
    from edgedistill.split.quantize import quantize
    from edgedistill.split.wire import encode

    meta = read_meta(run)
    image = np.random.default_rng(0).integers(0, 256, (1, *meta["input_shape"]), np.uint8)
    z = run_session(session(bottleneck_dir(run, None) / "head.onnx", 1),
                    normalize_uint8(image, meta["mean"], meta["std"]))
    return encode(quantize(z), meta["wire"]["compression"])


def main() -> None:
    from benchmarks.common import header
    from edgedistill.report.markdown import markdown_table
    from edgedistill.split.tokens import read_token

    parser = argparse.ArgumentParser()
    parser.add_argument("--run", required=True, help="a split run directory")
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--max-connections", type=int, default=1024)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    parser.add_argument("--body-timeout", type=float, default=30.0)
    parser.add_argument("--requests", type=int, default=200, help="valid requests per phase")
    args = parser.parse_args()
    token = read_token(args.token_file)
    body = _valid_body(args.run)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = _start_server(args, port)
    try:
        probe(url, token, body, 20)
        quiet = probe(url, token, body, args.requests, pause=0.05)
        give_up = args.body_timeout + args.header_timeout + 60
        queue = mp.get_context("spawn").Queue()
        attacker = mp.get_context("spawn").Process(
            target=_attack, args=(port, args.clients, token, give_up, queue))
        tic = time.monotonic()
        attacker.start()
        assert queue.get(timeout=120) == "opened"
        connected = time.monotonic() - tic
        span = args.body_timeout + 2  # until the last slow connection is closed
        during = probe(url, token, body, args.requests, pause=span / args.requests)
        probed = time.monotonic() - tic
        attack = queue.get(timeout=give_up + 30)
        attacker.join(30)
        metrics = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"}).text
    finally:
        proc.terminate()
        proc.wait(10)
    print(header(" ".join(["python -m benchmarks.split_slow_clients", *sys.argv[1:]])))
    print(f"{args.clients} slow clients connected {connected:.1f} s after their process started "
          f"({attack['connect_errors']} connect errors); {args.requests} valid requests spread "
          f"over {probed - connected:.1f} s of the attack; {attack['still_open']} slow "
          "connections were still open when the benchmark gave up\n")
    latency = "ms p50 / p90 / p99 / max"
    print(markdown_table([
        {"phase": "quiet", "valid answers": quiet["statuses"], latency: quantiles(quiet["ms"])},
        {"phase": "during attack", "valid answers": during["statuses"],
         latency: quantiles(during["ms"])}]))
    slowest = sorted(zip(during["ms"], during["at"], strict=True), reverse=True)[:5]
    print("slowest valid requests during the attack (ms at s after it began): "
          + ", ".join(f"{ms:.0f} at {t - tic:.1f}" for ms, t in slowest) + "\n")
    rows = []
    for kind, what in KINDS.items():
        held = attack["held"].get(kind, [])
        rows.append({"kind": kind, "does": what, "closed by server": len(held),
                     "answers": attack["answers"].get(kind, {}),
                     "held s min / median / max": f"{min(held):.1f} / "
                     f"{statistics.median(held):.1f} / {max(held):.1f}" if held else "-"})
    print(markdown_table(rows))
    print("\n" + "\n".join(line for line in metrics.splitlines()
                           if "connections_closed" in line or "disconnects" in line))


if __name__ == "__main__":
    main()

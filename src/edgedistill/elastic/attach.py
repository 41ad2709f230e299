"""``ServiceClient``: a student's end of a teacher service, in the shape of a
``TeacherPool`` (``submit``, ``collect``, ``alive``, ...) so ``PoolSource`` drives a
shared service exactly as it drives its own pool, ledger included.

Each ``submit`` sends its request at once, without waiting (the service queues it), so
the prefetch window fills while the student trains; ``collect`` takes the answers,
waiting only when none is there. The client keeps every request until its answer
arrives: when the service goes away (stopped, restarted, its node lost) the student
waits for a service of that name to come back, checks it serves the same teacher, and
sends the unanswered requests again, so no batch is lost; an answer for a batch already
answered is dropped (counted in ``dropped``), so none is taken twice.
"""

from __future__ import annotations

import os
import secrets
import socket
import time

from edgedistill.elastic import cluster
from edgedistill.elastic.pool import Ticket
from edgedistill.elastic.protocol import InputSpec, Key, Reply, Request
from edgedistill.elastic.service import find_service, teacher_hash
from edgedistill.errors import UsageError

SERVICE_WAIT_S = 600.0  # how long a student waits for its service to come back
RETRY_S = 1.0
CALL_SLACK_S = 30.0


def student_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class ServiceClient:
    def __init__(self, name: str, address: str | None, source: str, layers: list[str],
                 inputs: InputSpec, log=print, wait_s: float = SERVICE_WAIT_S):
        import ray

        self._ray = ray
        self.name, self.source, self.inputs, self.log = name, source, inputs, log
        self.want_layers = list(layers)
        self.wait_s = wait_s
        self.id = student_id()
        self.digest = teacher_hash(source)
        self.tickets: dict[Key, Ticket] = {}
        self.requests: dict[Key, Request] = {}  # sent, not yet answered
        self.calls: list = []  # exchange calls in flight
        self.state = {"alive": 0, "starting": 1, "restarts": 0, "busy_s": 0.0, "resent": 0,
                      "new": True}
        self.dropped = self.reconnects = 0
        self.joined: int | None = None  # when the service met this student (its count)
        self.waited_s = 0.0
        self.fresh = 0  # answers taken since the last collect
        self.owns_ray = cluster.connect(address or "auto")
        try:
            self.actor = find_service(name)
            self._check(ray.get(self.actor.describe.remote(), timeout=CALL_SLACK_S))
        except BaseException:
            self.close()
            raise

    def _check(self, info: dict) -> None:
        """Refuse a service that serves another teacher, other inputs or too few layers."""
        here = f"teacher service {self.name!r}"
        if info["hash"] != self.digest:
            raise UsageError(f"{here} serves teacher {info['source']} (weights {info['hash']}) "
                             f"but this student's teacher.source is {self.source} (weights "
                             f"{self.digest}); distil from the served teacher, or serve this "
                             "one under another --name")
        if info["inputs"] != self.inputs:
            raise UsageError(f"{here} prepares images as {info['inputs']} but this student's "
                             f"data gives {self.inputs}; serve a config with this data section")
        missing = sorted(set(self.want_layers) - set(info["layers"]))
        if missing:
            raise UsageError(f"{here} hooks teacher layers {info['layers']}, not {missing}; "
                             "serve a config whose losses name these layers")
        self.layers = info["layers"]

    # ---- what PoolSource calls ----
    def submit(self, request: Request) -> Ticket:
        request.layers = self.want_layers
        ticket = Ticket(request.key, -1, None, time.monotonic())
        self.tickets[request.key] = ticket
        self.requests[request.key] = request
        try:  # answers that came meanwhile are taken now, so the student need not wait
            self._take()
        except self._ray.exceptions.RayError:
            pass  # the service is gone: the next collect waits for it
        self.calls.append(self.actor.exchange.remote(self.id, [request], self.waited_s, 0.0))
        return ticket

    def collect(self, timeout: float) -> None:
        """Take the answers that are there; when none, wait up to ``timeout`` s for one.
        PoolSource calls this only while the student waits: that time is its wait."""
        ray = self._ray
        tic = time.perf_counter()
        try:
            self._take()
            if not self.fresh:
                call = self.actor.exchange.remote(self.id, [], self.waited_s, timeout)
                self.calls.append(call)
                if not ray.wait([call], timeout=timeout + CALL_SLACK_S)[0]:
                    raise ray.exceptions.GetTimeoutError("the service did not answer")
                self._take()
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError,
                ray.exceptions.ActorUnavailableError) as err:
            self._reconnect(type(err).__name__)
        finally:
            self.fresh = 0
            self.waited_s += time.perf_counter() - tic

    def _take(self) -> None:
        """Settle the exchange calls that finished."""
        if not self.calls:
            return
        ready = set(self._ray.wait(self.calls, num_returns=len(self.calls), timeout=0)[0])
        self.calls = [c for c in self.calls if c not in ready]
        forgotten = False
        for ref in ready:
            answers, state = self._ray.get(ref)
            # the service's calls run concurrently: the call that met this student may
            # come back after others; only a later meeting means it forgot us
            joined = state.get("joined")
            if joined is not None and self.joined is not None and joined > self.joined:
                forgotten = True
            if joined is not None and (self.joined is None or joined >= self.joined):
                self.joined, self.state = joined, state
            elif joined is None:
                self.state = state
            for reply in answers:
                self._accept(reply)
        if forgotten:  # silent too long (a long pause): the service dropped our queue
            self._resend()

    def _accept(self, reply: Reply) -> None:
        ticket = self.tickets.get(reply.key)
        if ticket is None or ticket.finished:
            self.dropped += 1  # abandoned by a window restart, or answered already
            return
        ticket.reply = reply
        self.fresh += 1
        del self.tickets[reply.key]
        self.requests.pop(reply.key, None)

    def _reconnect(self, why: str) -> None:
        """Wait for a service of this name, check it, and send every open request again."""
        self.calls = []
        self.log(f"teacher service {self.name!r} is gone ({why}); waiting up to "
                 f"{self.wait_s:g}s for it to come back")
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                self.actor = find_service(self.name)
                self._check(self._ray.get(self.actor.describe.remote(), timeout=CALL_SLACK_S))
                break
            except (UsageError, self._ray.exceptions.RayError) as err:
                if isinstance(err, UsageError) and "no teacher service" not in str(err):
                    raise
                if time.monotonic() > deadline:
                    raise RuntimeError(f"teacher service {self.name!r} did not come back "
                                       f"within {self.wait_s:g}s") from None
                time.sleep(RETRY_S)
        self.reconnects += 1
        self.joined = None  # a new service: what we send now is all it must know
        self._resend()
        self.log(f"teacher service {self.name!r} is back; {len(self.requests)} request(s) "
                 "sent again")

    def _resend(self) -> None:
        self.calls.append(self.actor.exchange.remote(self.id, list(self.requests.values()),
                                                     self.waited_s, 0.0))

    def expire(self, deadline_s: float) -> None:
        """Nothing to do: the service replaces its stalled replicas itself."""

    @property
    def alive(self) -> int:
        return self.state["alive"]

    @property
    def starting(self) -> int:
        """Never 0 while none is alive: the student waits for the service to get one."""
        return self.state["starting"] if self.state["alive"] else max(1, self.state["starting"])

    @property
    def restarts(self) -> int:
        return self.state["restarts"]

    @property
    def busy_s(self) -> float:
        return self.state["busy_s"]

    @property
    def resent(self) -> int:
        """Requests of this student that the service re-sent after a replica died."""
        return self.state["resent"]

    def status(self) -> dict:
        return self._ray.get(self.actor.status.remote(), timeout=CALL_SLACK_S)

    def health(self) -> list[dict]:
        return self.status()["replicas"]

    def scale(self, n: int) -> None:
        self._ray.get(self.actor.scale.remote(n), timeout=CALL_SLACK_S)

    def wait_started(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while any(r["state"] == "starting" for r in self.health()):
            if time.monotonic() > deadline:
                raise UsageError(f"teacher service {self.name!r}: replicas still starting "
                                 f"after {timeout_s:g}s")
            time.sleep(RETRY_S)

    def close(self) -> None:
        actor = getattr(self, "actor", None)
        if actor is not None:
            try:
                self._ray.get(actor.detach.remote(self.id), timeout=5)
            except (self._ray.exceptions.RayError, TimeoutError):
                pass  # the service forgets a silent student by itself
            self.actor = None
        if self.owns_ray:
            cluster.disconnect()
        self.owns_ray = False

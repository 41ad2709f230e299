"""``TeacherPool``: teacher replicas as Ray actors that come, go, fail and are replaced.

Each replica is its own actor process with its own resources and backend, so a pool
mixes GPU and CPU replicas, PyTorch and ONNX Runtime, fp32 and int8. The pool routes
each request to the replica expected to answer first, ``(queued + 1) x observed
compute time``, not round robin, so a slow int8 CPU replica gets fewer batches than a
GPU one. A replica whose request fails is dead: its other requests come back as
failures for the caller to re-send, and a new replica of the same kind is started in
its place (three failed starts in a row retire that slot). ``scale(n)`` adds replicas
(anywhere Ray finds the resources, including nodes that joined after the start) or
drains the slowest ones. All bookkeeping happens in the caller's thread, in
``collect`` (no background thread to race with), and results are written into each
request's ``Ticket``, so several callers (two students sharing a pool, a test waiting
for a replica) can drive ``collect`` without taking each other's answers.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgedistill.elastic import cluster
from edgedistill.elastic.protocol import InputSpec, Key, Reply, Request
from edgedistill.elastic.replica import ReplicaWorker
from edgedistill.elastic.spec import ReplicaSpec
from edgedistill.errors import UsageError

MAX_FAILED_STARTS = 3
PROBE_EVERY_S = 5.0
EMA = 0.3


@functools.cache
def _actor_class():
    """``ReplicaWorker`` as a Ray actor class, made once (Ray exports it on first use)."""
    import ray

    return ray.remote(ReplicaWorker)


@dataclass
class Ticket:
    """One request in flight; ``reply`` is set when answered, ``lost`` when its replica
    died or stalled (the caller re-sends it)."""

    key: Key
    replica: int
    ref: object
    sent_at: float
    reply: Reply | None = None
    lost: bool = False

    @property
    def finished(self) -> bool:
        return self.reply is not None or self.lost


@dataclass
class Replica:
    id: int
    spec: ReplicaSpec
    actor: object
    ready: object
    failed_starts: int = 0
    state: str = "starting"
    info: dict = field(default_factory=dict)
    outstanding: dict = field(default_factory=dict)
    service_s: float | None = None
    served: int = 0
    busy_s: float = 0.0


class TeacherPool:
    def __init__(self, source: str, replicas: list[ReplicaSpec], layers: list[str],
                 inputs: InputSpec, calibration: Request | None = None,
                 address: str | None = None, max_in_flight: int = 4,
                 start_timeout_s: float = 300.0, log=print):
        import ray

        self._ray = ray
        if isinstance(source, str):
            local = not source.startswith("zoo:") and Path(source).exists()
            self.source = str(Path(source).resolve()) if local else source  # workers' cwd differs
        else:  # a model config: its factory file and weights, made absolute the same way
            from edgedistill.models.foreign import absolute_paths

            self.source = absolute_paths(source)
        self.layers = list(layers)
        self.inputs = inputs
        self.calibration = calibration
        self.max_in_flight = max_in_flight
        self.log = log
        self.specs = list(replicas)
        self.owns_ray = cluster.connect(address)
        self.replicas: dict[int, Replica] = {}
        self.restarts = 0
        self.busy_s = 0.0
        self.start_error: str | None = None
        self._next_id = 0
        self._pings: dict[object, int] = {}
        self._last_probe = time.monotonic()
        try:
            for spec in {s.model_dump_json(): s for s in self.specs}.values():
                cluster.check_placeable(spec)
            cluster.check_total(self.specs)
            for spec in self.specs:
                self.add(spec)
            self.wait_started(start_timeout_s)
        except BaseException:
            self.close()
            raise

    def add(self, spec: ReplicaSpec | None = None, failed_starts: int = 0) -> int:
        """Start one replica (default: the next kind in the configured list)."""
        if spec is None:
            spec = self.specs[len(self.active()) % len(self.specs)]
        rid, self._next_id = self._next_id, self._next_id + 1
        actor = _actor_class().options(
            num_cpus=spec.num_cpus, num_gpus=spec.num_gpus, resources=spec.resources or None,
            max_restarts=0, scheduling_strategy="SPREAD",
        ).remote(rid, self.source, spec, self.layers, self.inputs, self.calibration)
        self.replicas[rid] = Replica(rid, spec, actor, actor.load.remote(), failed_starts)
        return rid

    def remove(self, rid: int) -> None:
        """Stop routing to replica ``rid``; it is killed once its queue is empty."""
        rep = self.replicas[rid]
        if rep.state == "starting" or not rep.outstanding:
            self._drop(rep)
        else:
            rep.state = "draining"

    def scale(self, n: int) -> None:
        """Grow or shrink to ``n`` replicas; shrinking drops starting ones, then the slowest."""
        if n < 1:
            raise UsageError(f"a teacher pool needs at least 1 replica, asked for {n}")
        active = self.active()
        for _ in range(n - len(active)):
            self.add()
        victims = sorted(active, key=lambda r: (r.state == "alive", -(r.service_s or 0.0), -r.id))
        for rep in victims[:max(0, len(active) - n)]:
            self.remove(rep.id)

    def active(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.state in ("starting", "alive")]

    @property
    def alive(self) -> int:
        return sum(r.state == "alive" for r in self.replicas.values())

    @property
    def starting(self) -> int:
        return sum(r.state == "starting" for r in self.replicas.values())

    def pick(self) -> Replica | None:
        """The live replica expected to answer a new request first, if any has room."""
        known = [r.service_s for r in self.replicas.values() if r.service_s is not None]
        guess = min(known, default=0.0)
        best, best_eta = None, float("inf")
        for rep in self.replicas.values():
            if rep.state != "alive" or len(rep.outstanding) >= self.max_in_flight:
                continue
            eta = (len(rep.outstanding) + 1) * (rep.service_s if rep.service_s else guess)
            if eta < best_eta:
                best, best_eta = rep, eta
        return best

    def submit(self, request: Request) -> Ticket | None:
        """Send ``request`` to the best replica; None when every queue is full."""
        rep = self.pick()
        if rep is None:
            return None
        ref = rep.actor.infer.remote(request)
        ticket = Ticket(request.key, rep.id, ref, time.monotonic())
        rep.outstanding[ref] = ticket
        return ticket

    def collect(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for anything to finish, then settle what did: tickets,
        replica states, replacements."""
        self._probe()
        refs = {t.ref: t for r in self.replicas.values() for t in r.outstanding.values()}
        starting = {r.ready: r for r in self.replicas.values() if r.state == "starting"}
        waiting = [*refs, *starting, *self._pings]
        if not waiting:
            time.sleep(timeout)
            return
        ready, _ = self._ray.wait(waiting, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self._ray.wait(waiting, num_returns=len(waiting), timeout=0)
        for ref in ready:
            if ref in starting:
                self._started(starting[ref])
            elif ref in self._pings:
                rep = self.replicas.get(self._pings.pop(ref))
                try:
                    self._ray.get(ref)
                except self._ray.exceptions.RayError as err:
                    if rep is not None:
                        self._fail(rep, f"health probe failed: {type(err).__name__}")
            elif ref in refs:
                self._finished(refs[ref])

    def expire(self, deadline_s: float) -> None:
        """Kill replicas holding a request older than ``deadline_s``: they stalled."""
        now = time.monotonic()
        for rep in list(self.replicas.values()):
            oldest = min((t.sent_at for t in rep.outstanding.values()), default=now)
            if now - oldest > deadline_s:
                self._fail(rep, f"no answer within {deadline_s:g}s")

    def _finished(self, ticket: Ticket) -> None:
        rep = self.replicas.get(ticket.replica)
        if rep is None or ticket.ref not in rep.outstanding:
            return
        try:
            reply: Reply = self._ray.get(ticket.ref)
        except self._ray.exceptions.RayTaskError as err:
            raise RuntimeError(f"teacher replica {rep.id} failed on batch {ticket.key}: "
                               f"{err.cause!r}") from None
        except self._ray.exceptions.RayError as err:
            self._fail(rep, type(err).__name__)
            return
        del rep.outstanding[ticket.ref]
        ticket.reply = reply
        rep.served += 1
        rep.busy_s += reply.compute_s
        self.busy_s += reply.compute_s
        rep.service_s = reply.compute_s if rep.service_s is None else \
            (1 - EMA) * rep.service_s + EMA * reply.compute_s
        if rep.state == "draining" and not rep.outstanding:
            self._drop(rep)

    def _fail(self, rep: Replica, reason: str) -> None:
        """Declare ``rep`` dead, mark its requests lost, start a replacement."""
        lost = list(rep.outstanding.values())
        for ticket in lost:
            ticket.lost = True
        replace = rep.state in ("alive", "starting")
        self._drop(rep)
        if replace:
            self.restarts += 1
            rid = self.add(rep.spec, rep.failed_starts)
            self.log(f"teacher replica {rep.id} ({rep.spec.describe()}) lost: {reason}; "
                     f"{len(lost)} batch(es) to re-send, replica {rid} starting in its place")

    def _drop(self, rep: Replica) -> None:
        rep.state = "dead"
        self._ray.kill(rep.actor, no_restart=True)
        del self.replicas[rep.id]

    def _started(self, rep: Replica) -> None:
        try:
            rep.info = self._ray.get(rep.ready)
            rep.state, rep.failed_starts = "alive", 0
            return
        except self._ray.exceptions.RayTaskError as err:
            reason = self.start_error = str(err.cause)
        except self._ray.exceptions.RayError as err:
            reason = type(err).__name__
        self._drop(rep)
        if rep.failed_starts + 1 < MAX_FAILED_STARTS:
            self.restarts += 1
            self.add(rep.spec, rep.failed_starts + 1)
        self.log(f"teacher replica {rep.id} ({rep.spec.describe()}) failed to start: {reason}")

    def wait_started(self, timeout_s: float) -> None:
        """Settle events until no replica is starting. A replica that cannot load the
        teacher, or replicas still waiting for resources after ``timeout_s``, is an error."""
        self.start_error = None
        deadline = time.monotonic() + timeout_s
        while self.starting and time.monotonic() < deadline:
            self.collect(min(0.5, max(0.0, deadline - time.monotonic())))
            if self.start_error is not None:
                raise UsageError(self.start_error)
        if self.starting:
            raise UsageError(f"{self.starting} teacher replica(s) did not start within "
                             f"{timeout_s:g}s; free Ray resources: {cluster.free_resources()}")

    def _probe(self) -> None:
        """Ping idle replicas now and then: one that died idle is replaced before use."""
        if time.monotonic() - self._last_probe < PROBE_EVERY_S:
            return
        self._last_probe = time.monotonic()
        pinged = set(self._pings.values())
        for rep in self.replicas.values():
            if rep.state == "alive" and not rep.outstanding and rep.id not in pinged:
                self._pings[rep.actor.ping.remote()] = rep.id

    def health(self) -> list[dict]:
        """One row per replica: state, kind, node, queue, speed, batches answered."""
        return [{"id": r.id, "state": r.state, "kind": r.spec.describe(),
                 "node": r.info.get("node", "")[:12], "pid": r.info.get("pid"),
                 "queued": len(r.outstanding), "served": r.served, "busy_s": r.busy_s,
                 "service_ms": None if r.service_s is None else 1e3 * r.service_s}
                for r in self.replicas.values()]

    def close(self) -> None:
        for rep in list(self.replicas.values()):
            self._drop(rep)
        if self.owns_ray:
            cluster.disconnect()
        self.owns_ray = False

"""The teacher service: one long-lived ``TeacherPool`` that several students share.

It is a Ray *named, detached actor* in the ``edgedistill`` namespace, not a Ray Serve
deployment: the pool already routes by measured speed, replaces dead replicas and
autoscales on the students' wait time, and what a shared pool needs on top is state
per student (its queue, its answers, its wait), which an actor holds naturally and
Serve's stateless request routing does not. Ray itself does the discovery
(``ray.get_actor(name, namespace)``) and keeps the actor alive after the process that
started it exits (``lifetime="detached"``); the replicas are the actor's children, so
they live and die with it.

Inside, one thread drives the pool (``collect`` in a loop, as the embedded source
does) and the students' calls only touch queues under a lock (``max_concurrency``
makes the actor threaded). Each student sends its requests ahead (its prefetch
window) and takes its answers in ``exchange``. Requests wait in a ``FairQueue`` and a
free replica slot goes to the student with the fewest requests on replicas, so a
student with a deep window gets more only while no one else is waiting. A request
whose replica died is queued again at the front of its student's queue: no student
sees a lost batch, and each answer is handed out once. A student silent for
``student_timeout_s`` (it crashed) is forgotten, its queue dropped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from edgedistill.elastic.cluster import can_place_now
from edgedistill.elastic.pool import TeacherPool, Ticket
from edgedistill.elastic.protocol import InputSpec, Key, Reply, Request
from edgedistill.elastic.scaler import Autoscaler
from edgedistill.elastic.spec import parse_autoscale, parse_replicas
from edgedistill.errors import UsageError

NAMESPACE = "edgedistill"
LOOP_S = 0.02
RATE_WINDOW_S = 10.0


def teacher_hash(source: str) -> str:
    """The digest of a teacher's architecture and weights: what a student and a service
    compare, so two paths to the same weights match and a retrained file does not."""
    from edgedistill import api
    from edgedistill.elastic.replica import _digest

    model = api.load_model(source)
    return _digest(getattr(model, "spec", {}), model.state_dict())


class FairQueue:
    """Per-student FIFO queues; ``pop`` serves the student with the fewest requests in
    flight (ties: the one served longest ago), so no window starves another."""

    def __init__(self):
        self.queues: dict[str, deque] = {}
        self._turn = 0
        self._last: dict[str, int] = {}

    def push(self, student: str, item, front: bool = False) -> None:
        queue = self.queues.setdefault(student, deque())
        queue.appendleft(item) if front else queue.append(item)

    def drop(self, student: str) -> None:
        self.queues.pop(student, None)
        self._last.pop(student, None)

    def __len__(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def pop(self, in_flight: dict[str, int]):
        """(student, item) of the next request to send, or None when all are empty."""
        ready = [s for s, q in self.queues.items() if q]
        if not ready:
            return None
        student = min(ready, key=lambda s: (in_flight.get(s, 0), self._last.get(s, -1)))
        self._turn += 1
        self._last[student] = self._turn
        return student, self.queues[student].popleft()


class Student:
    """What the service knows of one attached student."""

    def __init__(self, sid: str, now: float, joined: int):
        self.id = sid
        self.joined = joined  # this service's count of students met, at this one's arrival
        self.since = self.seen = now
        self.in_flight: dict[Key, tuple[Ticket, Request]] = {}
        self.answers: list[Reply] = []
        self.answered = self.resent = 0
        self.waited_s = 0.0
        self.marks: deque = deque()  # (time, waited_s) for the wait fraction

    def wait_fraction(self) -> float | None:
        if len(self.marks) < 2 or self.marks[-1][0] - self.marks[0][0] <= 0:
            return None
        (t0, w0), (t1, w1) = self.marks[0], self.marks[-1]
        return min(1.0, (w1 - w0) / (t1 - t0))


class TeacherService:
    """The actor's body (``ray.remote`` wraps it in ``start_service``)."""

    def __init__(self, name: str, source: str, digest: str, pool: dict[str, Any],
                 layers: list[str], inputs: InputSpec, calibration: Request | None,
                 student_timeout_s: float = 30.0):
        self.name, self.source, self.digest = name, source, digest
        self.pool_cfg = pool
        self.layers, self.inputs, self.calibration = list(layers), inputs, calibration
        self.student_timeout_s = student_timeout_s
        self.lock = threading.Condition()  # the students' state
        self.pool_lock = threading.RLock()  # the pool: the loop, scale and status
        self.students: dict[str, Student] = {}
        self.queue = FairQueue()
        self.departed_wait_s = 0.0
        self.joins = 0
        self.events: deque = deque(maxlen=50)
        self.finished: dict[int, deque] = {}
        self.pool: TeacherPool | None = None
        # what students are told of the pool; requests that come before ``start`` wait
        self.pool_now = {"alive": 0, "starting": 1, "restarts": 0, "busy_s": 0.0}
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 300.0) -> dict:
        """Start the replicas and the loop; a teacher that cannot load is a UsageError."""
        autoscale = parse_autoscale(self.pool_cfg.get("autoscale"))
        specs = parse_replicas(self.pool_cfg["replicas"])
        self.scaler = Autoscaler(autoscale) if autoscale else None
        self.grow_spec = parse_replicas([autoscale.replica])[0] \
            if autoscale and autoscale.replica else specs[0]
        self.deadline_s = self.pool_cfg["deadline_s"]
        self.pool = TeacherPool(self.source, specs, self.layers, self.inputs, self.calibration,
                                max_in_flight=self.pool_cfg["max_in_flight"],
                                start_timeout_s=timeout_s, log=self._log)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self.describe()

    def _log(self, line: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {line}")
        print(line, flush=True)

    def describe(self) -> dict:
        return {"name": self.name, "source": self.source, "hash": self.digest,
                "layers": self.layers, "inputs": self.inputs}

    # ---- the students' side ----
    def exchange(self, sid: str, requests: list[Request], waited_s: float,
                 timeout_s: float) -> tuple[list[Reply], dict]:
        """Queue ``requests`` for student ``sid`` and return its answers, waiting up to
        ``timeout_s`` for one when none is ready; the dict says how the pool stands and
        when ``sid`` joined (``joined`` grows when it was forgotten and is met anew: it must
        then send its open requests again). Calls run concurrently, so the one that meets
        a student first is not always the one it sent first: a student compares
        ``joined``, not ``new``, to tell a late answer from being forgotten."""
        with self.lock:
            now = time.monotonic()
            student = self.students.get(sid)
            new = student is None
            if new:
                self.joins += 1
                student = self.students[sid] = Student(sid, now, self.joins)
                self._log(f"student {sid} attached")
            student.seen = now
            student.waited_s = waited_s
            student.marks.append((now, waited_s))
            while student.marks and now - student.marks[0][0] > RATE_WINDOW_S:
                student.marks.popleft()
            for request in requests:
                self.queue.push(sid, request)
            if not student.answers and timeout_s > 0:
                self.lock.wait_for(lambda: student.answers or self._stop, timeout_s)
            answers, student.answers = student.answers, []
            return answers, {**self.pool_now, "resent": student.resent, "new": new,
                             "joined": student.joined}

    def detach(self, sid: str) -> None:
        with self.lock:
            self._forget(sid, "detached")

    def _forget(self, sid: str, why: str) -> None:
        student = self.students.pop(sid, None)
        if student is not None:
            self.queue.drop(sid)
            self.departed_wait_s += student.waited_s
            self._log(f"student {sid} {why}")

    # ---- the loop that drives the pool ----
    def _loop(self) -> None:
        while not self._stop:
            with self.pool_lock:
                try:
                    self._step()
                except Exception as err:  # keep serving the others; say why in status
                    self._log(f"service loop error: {type(err).__name__}: {err}")
                    time.sleep(LOOP_S)
            time.sleep(0.001)  # let scale and status take the pool between steps

    def _step(self) -> None:
        with self.lock:
            self._dispatch()
        self.pool.collect(LOOP_S)  # waits for replicas without holding up the students
        self.pool.expire(self.deadline_s)
        with self.lock:
            now = time.monotonic()
            for student in list(self.students.values()):
                self._settle(student, now)
                if now - student.seen > self.student_timeout_s:
                    self._forget(student.id, f"silent for {self.student_timeout_s:g}s: "
                                             "forgotten")
            pool = self.pool
            self.pool_now = {"alive": pool.alive, "starting": pool.starting,
                             "restarts": pool.restarts, "busy_s": pool.busy_s}
            self.lock.notify_all()
            waited = self.departed_wait_s + sum(s.waited_s for s in self.students.values())
        self._autoscale(now, waited)

    def _settle(self, student: Student, now: float) -> None:
        for key, (ticket, request) in list(student.in_flight.items()):
            if ticket.lost:
                del student.in_flight[key]
                student.resent += 1
                self.queue.push(student.id, request, front=True)
            elif ticket.reply is not None:
                del student.in_flight[key]
                student.answers.append(ticket.reply)
                student.answered += 1
                self.finished.setdefault(ticket.replica, deque()).append(now)

    def _dispatch(self) -> None:
        while self.queue and self.pool.pick() is not None:
            counts = {s.id: len(s.in_flight) for s in self.students.values()}
            sid, request = self.queue.pop(counts)
            student = self.students.get(sid)
            if student is None:
                continue
            if request.key in student.in_flight:  # asked again while in flight
                continue
            ticket = self.pool.submit(request)
            student.in_flight[request.key] = (ticket, request)

    def _autoscale(self, now: float, waited: float) -> None:
        """The embedded policy on the students' summed wait: two students waiting 3% of
        the time each count as 6%, so a pool that keeps one waiting grows."""
        if self.scaler is None:
            return
        pool = self.pool
        target = self.scaler.tick(now, waited, pool.busy_s, pool.alive, pool.starting,
                                  lambda: can_place_now(self.grow_spec))
        if target is None:
            return
        self._log(f"autoscaling {pool.alive + pool.starting} -> {target} replicas")
        if target > pool.alive + pool.starting:
            pool.add(self.grow_spec)
        else:
            pool.scale(target)

    # ---- operators' side ----
    def scale(self, n: int) -> dict:
        """Grow or shrink to ``n`` replicas now (``teachers scale``): new ones start where
        Ray finds room; the slowest drain: no new request goes to them, the batches they
        hold are answered, then they stop. Says which were added, draining (with the
        batches they still hold) and removed at once."""
        if n < 1:
            raise UsageError(f"a teacher service needs at least 1 replica, asked for {n}")
        if self.scaler is not None:
            low, high = self.scaler.settings.min_replicas, self.scaler.settings.max_replicas
            if not low <= n <= high:
                raise UsageError(f"teacher service {self.name!r} autoscales between {low} and "
                                 f"{high} replicas; asked for {n}")
        with self.pool_lock:
            before = {r["id"]: r for r in self.pool.health()}
            self.pool.scale(n)
            after = {r["id"]: r for r in self.pool.health()}
        done = {"added": sorted(set(after) - set(before)),
                "draining": {rid: before[rid]["queued"] for rid, row in after.items()
                             if row["state"] == "draining" and rid in before
                             and before[rid]["state"] != "draining"},
                "removed": sorted(set(before) - set(after))}
        self._log(f"scaled to {n} replicas by request: added {done['added']}, draining "
                  f"{sorted(done['draining'])}, removed {done['removed']}")
        return done

    def status(self) -> dict:
        with self.pool_lock, self.lock:
            now = time.monotonic()
            replicas = []
            for row in self.pool.health():
                done = self.finished.setdefault(row["id"], deque())
                while done and now - done[0] > RATE_WINDOW_S:
                    done.popleft()
                row["load"] = row["queued"] / self.pool.max_in_flight
                row["answers_per_s"] = len(done) / RATE_WINDOW_S
                replicas.append(row)
            students = [{"id": s.id, "attached_s": now - s.since, "queued":
                         len(self.queue.queues.get(s.id, ())), "in_flight": len(s.in_flight),
                         "answered": s.answered, "resent": s.resent,
                         "wait_fraction": s.wait_fraction()} for s in self.students.values()]
            return {**self.describe(), "replicas": replicas, "students": students,
                    "restarts": self.pool.restarts, "events": list(self.events)[-5:]}

    def shutdown(self) -> None:
        """Stop the loop and kill the replicas (the caller then kills this actor)."""
        with self.lock:
            self._stop = True
            self.lock.notify_all()
        if self._thread is not None:
            self._thread.join(5)
        with self.pool_lock:
            if self.pool is not None:
                self.pool.close()


# ---- finding, starting and stopping services on a Ray cluster ----
def running_services() -> list[str]:
    import ray

    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a.get("namespace") == NAMESPACE)


def find_service(name: str):
    """The actor of service ``name``; a UsageError naming the running ones if none."""
    import ray

    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        running = ", ".join(running_services()) or "none"
        raise UsageError(f"no teacher service {name!r} runs on this Ray cluster (running: "
                         f"{running}); start it with `edgedistill teachers serve CONFIG "
                         f"--name {name}`") from None


def start_service(name: str, source: str, pool: dict[str, Any], layers: list[str],
                  inputs: InputSpec, calibration: Request | None,
                  student_timeout_s: float = 30.0, timeout_s: float = 300.0) -> dict:
    """Start service ``name`` as a detached actor and wait until its replicas answer; a
    failure kills what was started and says why."""
    import ray

    if name in running_services():
        raise UsageError(f"a teacher service {name!r} already runs; stop it first with "
                         f"`edgedistill teachers stop {name}`, or pick another --name")
    digest = teacher_hash(source)
    if isinstance(source, str) and Path(source).exists():
        source = str(Path(source).resolve())  # the actor's working folder differs
    actor = ray.remote(TeacherService).options(
        name=name, namespace=NAMESPACE, lifetime="detached", num_cpus=0,
        max_concurrency=64, max_restarts=0,
    ).remote(name, source, digest, pool, layers, inputs, calibration, student_timeout_s)
    try:
        return ray.get(actor.start.remote(timeout_s))
    except ray.exceptions.RayTaskError as err:
        ray.kill(actor)
        if isinstance(err.cause, UsageError):
            raise UsageError(f"teacher service {name!r}: {err.cause}") from None
        raise
    except BaseException:
        ray.kill(actor)
        raise


def scale_service(name: str, n: int) -> dict:
    """Scale service ``name`` to ``n`` replicas (``TeacherService.scale``); a count it
    refuses is a UsageError."""
    import ray

    actor = find_service(name)
    try:
        return ray.get(actor.scale.remote(n), timeout=60)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, UsageError):
            raise UsageError(str(err.cause)) from None
        raise


def stop_service(name: str) -> None:
    """Kill the replicas, then the service's actor."""
    import ray

    actor = find_service(name)
    try:
        ray.get(actor.shutdown.remote(), timeout=30)
    except (ray.exceptions.RayError, TimeoutError):
        pass  # dead or stuck: killing the actor takes its replicas with it
    ray.kill(actor)
    deadline = time.monotonic() + 30
    while name in running_services() and time.monotonic() < deadline:
        time.sleep(0.2)  # Ray frees the name shortly after the actor dies

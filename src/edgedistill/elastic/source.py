"""``PoolSource``: the Distiller's teacher is a pool of Ray replicas, ahead of the student.

While the student trains on batch ``(e, s)``, requests for the next batches are already
queued on the replicas: a window of ``max_in_flight`` per live replica, answers held
until the student asks (results arrive in any order and are handed out in order).
Request ids are batch positions, so a request whose replica died or stalled past
``deadline_s`` is simply sent again elsewhere, and the ledger proves each batch was
accepted once. A call for a batch outside the window (a resume, an epoch the student
skipped to) restarts the window there; requests for the old window are abandoned.

Determinism: answers depend on the backend only, not on which replica computed them,
so with a pool of one backend a run (and a resumed run) is reproducible bit for bit.
Mixing backends (torch and int8) mixes their small numeric differences by routing.

Under data-parallel training every rank is a student of one pool that rank 0 starts
(``ranks.shared_pool``), and its requests, each for that rank's slice, are keyed by
(epoch, step, rank).
"""

from __future__ import annotations

import time

import torch

from edgedistill.config import PoolConfig
from edgedistill.distill.sources import SOURCES, TeacherOutputs, TeacherSource
from edgedistill.elastic.cluster import can_place_now, free_resources
from edgedistill.elastic.plan import BatchPlan, Ledger
from edgedistill.elastic.pool import TeacherPool, Ticket
from edgedistill.elastic.protocol import Key, Reply, decode
from edgedistill.elastic.scaler import Autoscaler
from edgedistill.elastic.spec import parse_autoscale, parse_replicas
from edgedistill.errors import UsageError
from edgedistill.train.distributed import world

MAX_ATTEMPTS = 5
CALIBRATION_IMAGES = 256
POLL_S = 0.5
WARN_EVERY_S = 30.0


@SOURCES.register("pool", settings=PoolConfig)
class PoolSource(TeacherSource):
    """Teacher answers from a pool of Ray replicas, prefetched, in order, exactly once."""

    rebuilds_teacher = True

    def __init__(self, source: str, cfg, device: torch.device, pool: TeacherPool | None = None,
                 log=print):
        super().__init__()
        self.source = source
        self.cfg = cfg
        self.device = device
        self.specs = parse_replicas(cfg.replicas)
        autoscale = parse_autoscale(cfg.autoscale)
        self.scaler = Autoscaler(autoscale) if autoscale else None
        self.grow_spec = parse_replicas([autoscale.replica])[0] \
            if autoscale and autoscale.replica else self.specs[0]
        self.pool = pool
        self.owns_pool = pool is None
        self.log = log
        self.ledger = Ledger()
        self.pending: dict[Key, Ticket] = {}
        self.done: dict[Key, Reply] = {}
        self.attempts: dict[Key, int] = {}
        self.waited_s = 0.0
        self._last: tuple[Key, Reply] | None = None
        self._epoch_mark = (0, 0)

    @classmethod
    def from_config(cls, cfg, teacher, device: torch.device, run_dir) -> PoolSource:
        return cls(cfg.teacher.source, cfg.teacher.pool, device)

    def attach(self, layers: list[str], train_pipe) -> None:
        super().attach(layers, train_pipe)
        self.plan = BatchPlan(train_pipe)
        missing = sorted(set(self.layers) - set(self.pool.layers)) if self.pool else []
        if missing:
            raise UsageError(f"the teacher pool was built without layers {missing}; build it "
                             f"with layers={self.layers}")
        self.rank = world().rank if world().size > 1 else None
        if self.pool is None and not self.cfg.service and self.rank is not None:
            from edgedistill.elastic.ranks import shared_pool

            self.scaler = None  # the shared pool scales itself, on all the ranks' waits
            self.pool = shared_pool(self.source, self.cfg, self.layers, self.plan, self.log)
        if self.pool is None and self.cfg.service:
            from edgedistill.elastic.attach import ServiceClient

            self.scaler = None  # a service scales itself, on all its students' waits
            self.pool = ServiceClient(self.cfg.service, self.cfg.address, self.source,
                                      self.layers, self.plan.inputs, log=self.log)
        if self.pool is None:
            self.pool = TeacherPool(self.source, self.specs, self.layers, self.plan.inputs,
                                    self.plan.calibration(CALIBRATION_IMAGES),
                                    address=self.cfg.address,
                                    max_in_flight=self.cfg.max_in_flight, log=self.log)

    # ---- the student's side ----
    def outputs(self, batch) -> TeacherOutputs:
        key = (batch.epoch, batch.step)
        if self._last is not None and self._last[0] == key:
            self.ledger.served.append(key)
            self.ledger.repeats += 1
            return decode(self._last[1], self.device)
        if not self.plan.holds(key, batch.indices.cpu()):
            raise RuntimeError(f"batch {key} holds other samples than the training pipeline "
                               "this source was attached to; attach it to the pipeline that "
                               "makes the batches")
        if key not in self.pending and key not in self.done:
            self._restart_window(key)
        tic = warn_at = time.perf_counter()
        while key not in self.done:
            self._fill(key)
            self._pump()
            if not self.pool.alive and time.perf_counter() - warn_at > WARN_EVERY_S:
                warn_at = time.perf_counter()
                self.log(f"waiting for a teacher replica: {self.pool.starting} starting, "
                         f"none alive; free Ray resources: {free_resources()}")
        self.waited_s += time.perf_counter() - tic
        reply = self.done.pop(key)
        self._last = (key, reply)
        self.ledger.served.append(key)
        self._fill(self.plan.next(key))
        self._autoscale()
        return decode(reply, self.device)

    def _window(self, start: Key) -> list[Key]:
        return self.plan.keys(start, self.cfg.max_in_flight * max(1, self.pool.alive))

    def _restart_window(self, key: Key) -> None:
        keep = set(self._window(key))
        self.ledger.abandoned += sum(k not in keep for k in self.pending)
        self.pending = {k: t for k, t in self.pending.items() if k in keep}
        self.done = {k: r for k, r in self.done.items() if k in keep}

    def _fill(self, start: Key) -> None:
        """Send requests for the window's batches that have none, nearest first."""
        for key in self._window(start):
            if key in self.pending or key in self.done:
                continue
            request = self.plan.request(key, self.cfg.top_k, self.cfg.wire_precision)
            request.key = self._wire(key)
            ticket = self.pool.submit(request)
            if ticket is None:
                return
            self.pending[key] = ticket

    def _pump(self) -> None:
        self.pool.collect(POLL_S)
        self.pool.expire(self.cfg.deadline_s)
        for key, ticket in list(self.pending.items()):
            if ticket.finished:
                del self.pending[key]
                self._settle(key, ticket)
        if not self.pool.alive and not self.pool.starting:
            raise RuntimeError("every teacher replica is gone and none could be restarted; "
                               "see the messages above for why")

    def _settle(self, key: Key, ticket: Ticket) -> None:
        if ticket.lost:
            self.attempts[key] = self.attempts.get(key, 0) + 1
            self.ledger.resent += 1
            if self.attempts[key] >= MAX_ATTEMPTS:
                raise RuntimeError(f"batch {key} was lost by {MAX_ATTEMPTS} teacher replicas "
                                   "in a row; giving up")
            return
        if ticket.reply.key != self._wire(key):
            raise RuntimeError(f"replica {ticket.reply.replica} answered {ticket.reply.key} "
                               f"for {key}")
        self.ledger.accepted[key] += 1
        self.done[key] = ticket.reply

    def _wire(self, key: Key) -> tuple:
        """The request id: the batch position, and the rank when there are several."""
        return key if self.rank is None else (*key, self.rank)

    def _autoscale(self) -> None:
        if self.scaler is None:
            return
        pool = self.pool
        target = self.scaler.tick(time.monotonic(), self.waited_s, pool.busy_s, pool.alive,
                                  pool.starting, lambda: can_place_now(self.grow_spec))
        if target is None:
            return
        self.log(f"teacher pool: autoscaling {pool.alive + pool.starting} -> {target} replicas")
        if target > pool.alive + pool.starting:
            pool.add(self.grow_spec)
        else:
            pool.scale(target)

    # ---- reporting ----
    def scale(self, n: int) -> None:
        """Grow or shrink the pool to ``n`` replicas while training runs."""
        self.pool.scale(n)

    def accounting(self) -> Ledger:
        return self.ledger

    def stats(self) -> dict[str, float]:
        out = super().stats()
        resent0, restarts0 = self._epoch_mark
        self._epoch_mark = (self.ledger.resent, self.pool.restarts)
        out.update({"replicas": self.pool.alive, "teacher_resent": self.ledger.resent - resent0,
                    "replica_restarts": self.pool.restarts - restarts0})
        return out

    def close(self) -> None:
        if self.pool is not None and self.owns_pool:
            self.pool.close()

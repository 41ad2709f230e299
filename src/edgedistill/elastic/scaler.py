"""The autoscaling policy: more replicas while the student waits, fewer while they idle.

Two measured signals decide, over windows of ``interval_s``:

* the fraction of wall time the student spent waiting for teacher answers; above
  ``grow_wait_fraction`` one replica is added, if Ray has the resources free for it
  (a node that joined counts as soon as it is up);
* replica utilization, compute time over replica-time; one replica is removed when
  the remaining ones would stay under ``target_utilization`` and the student is not
  waiting, so the pool settles at the smallest size that keeps up.

One step at a time, nothing while a replica is still starting, and ``cooldown_s``
after each change so a decision is judged on numbers measured after the last one.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgedistill.elastic.spec import AutoscaleSettings


@dataclass
class Window:
    """What happened since the previous decision."""

    wall_s: float
    wait_s: float
    busy_s: float
    alive: int
    starting: int
    room: bool


class Autoscaler:
    def __init__(self, settings: AutoscaleSettings):
        self.settings = settings
        self._mark: tuple[float, float, float] | None = None
        self._quiet_until = 0.0

    def decide(self, w: Window) -> int:
        """The replica count to aim for (the current one when nothing should change)."""
        s = self.settings
        n = w.alive + w.starting
        if n < s.min_replicas or n > s.max_replicas:
            return min(max(n, s.min_replicas), s.max_replicas)
        if w.starting or w.wall_s <= 0 or w.alive == 0:
            return n
        waiting = w.wait_s / w.wall_s
        if waiting > s.grow_wait_fraction:
            return n + 1 if n < s.max_replicas and w.room else n
        utilization = w.busy_s / (w.wall_s * w.alive)
        if n > s.min_replicas and waiting < s.grow_wait_fraction / 2 and \
                utilization * n / (n - 1) < s.target_utilization:
            return n - 1
        return n

    def tick(self, now: float, wait_total: float, busy_total: float, alive: int,
             starting: int, room) -> int | None:
        """Called often with cumulative totals; returns a new target count at most once
        per interval. A window never spans a cooldown, so each decision is judged on
        numbers measured after the previous change settled."""
        if self._mark is None or now < self._quiet_until:
            self._mark = (now, wait_total, busy_total)
            return None
        t0, wait0, busy0 = self._mark
        if now - t0 < self.settings.interval_s:
            return None
        self._mark = (now, wait_total, busy_total)
        window = Window(now - t0, wait_total - wait0, busy_total - busy0, alive, starting,
                        room())
        target = self.decide(window)
        if target == alive + starting:
            return None
        self._quiet_until = now + self.settings.cooldown_s
        return target

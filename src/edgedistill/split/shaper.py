"""Client-side bandwidth emulation: a token bucket per direction and a one-way delay.

On loopback every request is instant, so latency-vs-bandwidth claims need a slower
link. ``Link`` emulates a symmetric link of ``mbit`` Mbit/s with ``delay_ms`` one
way: the request body is released only once headers and body would have crossed
the link, and the response is held for its own transmission time.
With the default burst of 0 the bucket is a pure serializer, so n bytes take
exactly ``8 n / rate`` seconds: the model the planner uses. A larger burst behaves
like a real token bucket filter. For kernel-level shaping see
``scripts/netns_split.sh`` (tc netem in two network namespaces).

Every emulated wait (link, device slowdown) goes through ``precise_sleep``: a plain
``time.sleep`` returns about 0.2 ms late on the quiet 2-core benchmark host (median of
32 sleeps of 5-30 ms; ``benchmarks/split_emulation.py``), and a split request waits three
or four times, so ~0.7 ms per request would be emulation error that neither a real link
nor a real device has.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from edgedistill.errors import UsageError

SPIN_S = 0.0005


def precise_sleep(seconds: float, clock: Callable[[], float] = time.perf_counter,
                  sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait ``seconds``: sleep all but the last ``SPIN_S``, then spin on ``clock`` until
    the deadline, so the wait ends on time instead of a wake-up latency late."""
    if seconds <= 0:
        return
    deadline = clock() + seconds
    if seconds > SPIN_S:
        sleep(seconds - SPIN_S)
    while clock() < deadline:
        pass


class TokenBucket:
    """Tokens are bytes, refilled at ``rate`` per second up to ``burst``.

    ``reserve(n)`` takes ``n`` bytes' worth of tokens, letting the balance go negative,
    and returns how long to wait until it is back to zero: a message larger than the
    burst is paced, never refused. ``consume(n)`` also does the waiting.
    """

    def __init__(self, rate_bytes_per_s: float, burst_bytes: float = 0.0,
                 clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = precise_sleep):
        if rate_bytes_per_s <= 0 or burst_bytes < 0:
            raise UsageError("token bucket needs rate > 0 and burst >= 0")
        self.rate, self.burst = rate_bytes_per_s, burst_bytes
        self.clock, self.sleep = clock, sleep
        self.tokens = burst_bytes
        self.stamp = clock()

    def reserve(self, n: int) -> float:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate) - n
        self.stamp = now
        return max(0.0, -self.tokens / self.rate)

    def consume(self, n: int) -> float:
        """Take ``n`` bytes' worth of tokens and wait as needed; returns the seconds waited."""
        wait = self.reserve(n)
        if wait:
            self.sleep(wait)
        return wait


class Link:
    """A symmetric emulated link: ``mbit`` Mbit/s each way and ``delay_ms`` each way.

    Each direction waits once per message (delay plus transmission time), with
    ``precise_sleep``, so the link costs what it is asked to cost.
    """

    def __init__(self, mbit: float, delay_ms: float = 0.0, burst_bytes: float = 0.0,
                 sleep: Callable[[float], None] = precise_sleep):
        if mbit <= 0 or delay_ms < 0:
            raise UsageError(f"link needs mbit > 0 and delay_ms >= 0, got {mbit}, {delay_ms}")
        self.mbit, self.delay = mbit, delay_ms / 1e3
        self.sleep = sleep
        self.up = TokenBucket(mbit * 1e6 / 8, burst_bytes, sleep=sleep)
        self.down = TokenBucket(mbit * 1e6 / 8, burst_bytes, sleep=sleep)

    def upload(self, header_bytes: int, body: bytes) -> Iterator[bytes]:
        """The body, released once headers and body would have crossed the link."""
        self.sleep(self.delay + self.up.reserve(header_bytes + len(body)))
        yield body

    def download(self, n: int) -> None:
        """Hold a received response of ``n`` bytes for its transmission time and delay."""
        self.sleep(self.down.reserve(n) + self.delay)

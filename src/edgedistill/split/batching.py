"""Batching of concurrent requests for one model on the edge server.

Requests queue up while the model is busy; when it is free, everything queued
(up to ``max_batch`` samples) runs as one batch. ``max_wait_ms`` may hold the first
request a little longer to let more arrive; the default 0 adds no latency to a lone
request, and batches still form under load because requests that arrive during a
model call wait for the next one. The model runs in one worker thread, so the
event loop keeps accepting and validating requests meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np


class Overloaded(Exception):
    """More samples are waiting than ``max_queue``; the server answers 503."""


@dataclass
class _Item:
    x: np.ndarray
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    """``await submit(x)`` returns ``(outputs, timing)`` for the rows of ``x``."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], max_batch: int = 32,
                 max_wait_ms: float = 0.0, max_queue: int = 1024):
        if max_batch < 1 or max_queue < max_batch or max_wait_ms < 0:
            raise ValueError("need max_batch >= 1, max_queue >= max_batch, max_wait_ms >= 0")
        self.run = run
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1e3, max_queue
        self.batches = self.samples = 0
        self._pending = 0
        self._queue: asyncio.Queue[_Item] | None = None
        self._carry: _Item | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="model")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        if self._queue is None:
            raise RuntimeError("Batcher.start() was not awaited")
        if self._pending + len(x) > self.max_queue:
            raise Overloaded(f"{self._pending} samples already queued (limit {self.max_queue})")
        item = _Item(x, asyncio.get_running_loop().create_future())
        self._pending += len(x)
        await self._queue.put(item)
        return await item.future

    async def _collect(self) -> list[_Item]:
        first = self._carry or await self._queue.get()
        self._carry = None
        items, count = [first], len(first.x)
        deadline = time.perf_counter() + self.max_wait
        while count < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), left)
                except asyncio.TimeoutError:
                    break
            if count + len(item.x) > self.max_batch:
                self._carry = item
                break
            items.append(item)
            count += len(item.x)
        return items

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect()
            start = time.perf_counter()
            batch = np.concatenate([i.x for i in items]) if len(items) > 1 else items[0].x
            try:
                out = await loop.run_in_executor(self._executor, self.run, batch)
            except Exception as err:  # the model failed: every waiting request learns why
                for i in items:
                    if not i.future.done():
                        i.future.set_exception(err)
                out = None
            finally:
                self._pending -= len(batch)
            if out is None:
                continue
            compute = (time.perf_counter() - start) * 1e3
            self.batches += 1
            self.samples += len(batch)
            row = 0
            for i in items:
                timing = {"queue_ms": (start - i.queued_at) * 1e3, "compute_ms": compute,
                          "batch_size": len(batch)}
                if not i.future.done():
                    i.future.set_result((out[row:row + len(i.x)], timing))
                row += len(i.x)

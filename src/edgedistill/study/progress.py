"""A live bar over a running grid, on a terminal only (logs and CI get the per-cell lines).

Cells train in worker processes that write their own ``train.log``, so the bar counts what
every pending cell has written to its ``metrics.jsonl``: one tick per finished epoch of any
cell, polled once a second, with the epochs of the cells still running in its description.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any


def _epochs_done(run_dir: Path) -> int:
    try:
        return (run_dir / "metrics.jsonl").read_text().count("\n")
    except OSError:
        return 0


class GridProgress:
    def __init__(self, jobs: list[dict[str, Any]], epochs: int, enabled: bool | None = None):
        self.dirs = [Path(j["run_dir"]) for j in jobs]
        self.keys = [j["cell"].key for j in jobs]
        self.epochs = epochs
        self.enabled = sys.stdout.isatty() if enabled is None else enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.progress = None

    def counts(self) -> list[int]:
        return [min(_epochs_done(d), self.epochs) for d in self.dirs]

    def describe(self, counts: list[int]) -> str:
        running = [f"{k} {c}/{self.epochs}" for k, c in zip(self.keys, counts, strict=True)
                   if 0 < c < self.epochs]
        return "cells " + (", ".join(running[:2]) if running else "starting")

    def _poll(self, task) -> None:
        while not self._stop.wait(1.0):
            counts = self.counts()
            self.progress.update(task, completed=sum(counts), description=self.describe(counts))

    def __enter__(self) -> GridProgress:
        if self.enabled and self.dirs:
            from rich.progress import Progress

            self.progress = Progress(transient=True)
            self.progress.start()
            task = self.progress.add_task("cells", total=len(self.dirs) * self.epochs,
                                          completed=sum(self.counts()))
            self._thread = threading.Thread(target=self._poll, args=(task,), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.progress is not None:
            self.progress.stop()

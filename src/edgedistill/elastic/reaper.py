"""A watchdog that kills an embedded Ray's processes once the process that started it
is gone, however it went.

An exception, Ctrl-C and SIGTERM (which Ray's driver turns into ``SystemExit``) reach
``ray.shutdown()``. A SIGKILL, a segfault or the kernel's OOM killer do not: Ray's gcs
and raylet share the fate of the process that started them, but its ``DashboardAgent``
and ``RuntimeEnvAgent`` stay, parent PID 1 (measured with Ray 2.60 after a SIGKILL of
the student: both still alive 30 s later; ray-project/ray#39092 reported the same
leak of the RuntimeEnvAgent).

Two marks find them. Every process Ray starts while ``ray.init`` runs (gcs, raylet,
dashboard, monitors) inherits a marker in its environment, and so does every worker the
raylet starts later; nothing else does, since the marker is set only around
``ray.init``. The agents rename themselves (``ray::DashboardAgent``), which wipes what
``/proc`` shows of their environment, so they are found as ``ray::`` processes with a
file open in this instance's temp folder, which the parent sends once ``ray.init``
returns. The watchdog runs detached (``setsid``: a Ctrl-C to the terminal's process
group does not reach it), waits for the pipe from its parent to close (``close()``
after ``ray.shutdown()``, or the parent's death) and then kills every process that
carries either mark. This file runs as a script (``python -I``): the watchdog imports
nothing but the standard library and psutil (which Ray ships).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

MARK = "EDGEDISTILL_RAY_OWNER"


class Reaper:
    """The parent's handle on one watchdog; ``marking()`` wraps ``ray.init``."""

    def __init__(self):
        import psutil

        self.token = f"{os.getpid()}-{secrets.token_hex(8)}"
        self.proc = subprocess.Popen(
            [sys.executable, "-I", __file__, self.token, str(Path(psutil.__file__).parents[1])],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)

    def watch_folder(self, folder: str) -> None:
        """Tell the watchdog the temp folder of this Ray instance (from ``address_info``)."""
        self.proc.stdin.write(f"{folder}\n".encode())
        self.proc.stdin.flush()

    @contextmanager
    def marking(self):
        """Processes started inside this block (Ray's, during ``ray.init``) are marked."""
        os.environ[MARK] = self.token
        try:
            yield
        finally:
            os.environ.pop(MARK, None)

    def close(self, timeout_s: float = 15.0) -> None:
        """Let the watchdog kill what ``ray.shutdown()`` left, and wait until it has."""
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _is_ours(proc, token: str, folders: list[str]) -> bool:
    if proc.environ().get(MARK) == token:
        return True
    if not folders or not " ".join(proc.cmdline()).startswith("ray::"):
        return False
    return any(f.path.startswith(s) for f in proc.open_files() for s in folders)


def marked(token: str, folders: list[str]) -> list:
    import psutil

    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and _is_ours(proc, token, folders):
                found.append(proc)
        except psutil.Error:  # gone, or another user's
            continue
    return found


def sweep(token: str, folders: list[str], timeout_s: float = 10.0) -> None:
    """SIGKILL every marked process (they may ignore SIGTERM) until none is left; a
    zombie counts as gone (its parent, not this process, reaps it)."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (victims := marked(token, folders)):
        for proc in victims:
            try:
                proc.kill()
            except psutil.Error:
                pass
        time.sleep(0.1)


def main(token: str, psutil_dir: str) -> None:
    sys.path.insert(0, psutil_dir)
    told = sys.stdin.buffer.read()  # returns at EOF: the parent closed the pipe or died
    sweep(token, [os.path.join(line, "") for line in told.decode().splitlines() if line])


if __name__ == "__main__":
    main(*sys.argv[1:3])

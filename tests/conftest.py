"""Shared test settings: one CPU thread (small models; deterministic; CI has 2 cores),
and helpers to build tiny experiments."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "edgedistill.cli"]


@pytest.fixture(autouse=True)
def _forget_plugins():
    """Entries a test's plugins register (from a user's file or module, not edgedistill's
    own) are removed after it, so later tests in the process see the built-ins only; a
    plugin file's module goes too, so importing the file again registers again."""
    from edgedistill.plugins import FILE_PREFIX
    from edgedistill.registry import REGISTRIES

    before = {id(r): set(r._items) for r in REGISTRIES}
    yield
    for registry in list(REGISTRIES):
        for name in set(registry._items) - before.get(id(registry), set()):
            origin = registry._origins.get(name, "")
            if origin.startswith("edgedistill.") or origin == "edgedistill":
                continue
            registry.forget(name)
            if origin.startswith(FILE_PREFIX):
                sys.modules.pop(origin, None)
            zoo = sys.modules.get("edgedistill.models.zoo")
            if zoo is not None:
                zoo._FAMILIES.pop(name, None)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600):
    """Run the real ``edgedistill`` command in a subprocess."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


@dataclass
class TimedRun:
    """A finished command with its wall time and the CPU seconds it (and its children)
    used; with ``-X importtime`` its stderr also says which modules it imported."""

    result: subprocess.CompletedProcess
    wall: float
    cpu: float

    @property
    def errors(self) -> list[str]:
        """stderr without the import-time lines."""
        return [x for x in self.result.stderr.splitlines() if not x.startswith("import time")]

    @property
    def imported(self) -> set[str]:
        return {x.rsplit("|", 1)[-1].strip() for x in self.result.stderr.splitlines()
                if x.startswith("import time")}


def timed_cli(*args: str, command: list[str] | None = None, importtime: bool = True,
              timeout: float = 120, cwd: Path | None = None) -> TimedRun:
    """Run ``edgedistill ARGS`` (``python -X importtime -m edgedistill.cli`` unless
    ``command`` names another way to start it) and measure it."""
    start = command or ([CLI[0], "-X", "importtime", *CLI[1:]] if importtime else CLI)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    result = subprocess.run([*start, *args], capture_output=True, text=True,
                            timeout=timeout, cwd=cwd)
    wall = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return TimedRun(result, wall, cpu)


def tiny_train_config(**over) -> dict:
    cfg = {
        "name": "tiny", "seed": 0,
        "data": {"dataset": "fashion_mnist", "limit_train": 512, "limit_test": 256,
                 "batch_size": 64, "eval_batch_size": 256},
        "model": {"name": "resnet8"},
        "train": {"epochs": 2, "threads": 1, "progress": False,
                  "optimizer": {"name": "sgd", "lr": 0.05}},
    }
    return set_dotted(cfg, over)


@pytest.fixture
def write_yaml(tmp_path):
    import yaml

    def write(cfg: dict, name: str = "cfg.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(cfg))
        return path

    return write


@pytest.fixture
def fill_disk(monkeypatch):
    """Call it to make later atomic writes put their temp file on /dev/full: the kernel's
    real ENOSPC, met by the real writers (torch's, safetensors', Python's)."""
    import os
    import stat
    import tempfile

    if not (os.path.exists("/dev/full") and stat.S_ISCHR(os.stat("/dev/full").st_mode)):
        pytest.skip("needs the /dev/full device")
    real = tempfile.mkstemp

    def mkstemp_on_full_disk(dir=None, prefix=None, suffix=None):
        fd, name = real(dir=dir, prefix=prefix, suffix=suffix)
        os.close(fd)
        os.unlink(name)
        os.symlink("/dev/full", name)
        return os.open(name, os.O_WRONLY), name

    return lambda: monkeypatch.setattr(tempfile, "mkstemp", mkstemp_on_full_disk)


def set_dotted(cfg: dict, over: dict) -> dict:
    """``cfg`` with ``{"a.b": v}`` overrides applied in place (sections made as needed)."""
    for key, value in over.items():
        node = cfg
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return cfg

"""The study grid: one cell per (student, technique, seed), each trained into its own run
directory, so the grid resumes cell by cell.

A cell with ``summary.json`` is finished and never run again; a cell with a checkpoint
continues from it (the Trainer's exact resume); any other cell starts fresh. Cells run
in this process or, with ``workers > 1``, in spawned processes. Every cell holds an
exclusive lock on its folder while it trains, so a second study process (or a worker
orphaned by a killed parent) can never write into the same run directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edgedistill.config import DistillExperiment, TeacherConfig
from edgedistill.config.study import StudyConfig, TechniqueConfig
from edgedistill.errors import UsageError

RUNTIME_KEYS = ("name", "train.threads", "train.device", "train.progress",
                "train.checkpoint_every_steps", "teacher.source", "teacher.cache.dir",
                "teacher.cache.batch_size", "plugins")


@dataclass(frozen=True)
class Cell:
    student: str
    technique: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.student}/{self.technique}/seed{self.seed}"


class Busy(Exception):
    """Another process holds the lock of this folder."""


@contextlib.contextmanager
def folder_lock(folder: Path, what: str) -> Iterator[None]:
    """Exclusive, non-blocking ``flock`` on ``folder/.lock``; released when the process dies."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise Busy(f"{what} {folder} is in use by process {fh.read().strip() or '?'}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield


def expand(cfg: StudyConfig, techniques: list[TechniqueConfig]) -> list[Cell]:
    """Seed-major order: after each seed the study holds a complete grid to report on."""
    return [Cell(s, t.label, seed) for seed in cfg.seeds for s in cfg.student_labels()
            for t in techniques]


def cell_dir(out: Path, cell: Cell) -> Path:
    return out / "cells" / cell.student / cell.technique / f"seed{cell.seed}"


def cell_state(run_dir: Path) -> str:
    if (run_dir / "summary.json").exists():
        return "done"
    if (run_dir / "checkpoints" / "last.pt").exists():
        return "partial"
    return "new"


def cell_config(cfg: StudyConfig, cell: Cell, technique: TechniqueConfig, teacher: Path,
                cache_dir: Path, threads: int | None) -> DistillExperiment:
    """The distillation experiment of one cell: the study's data, schedule and teacher
    snapshot, one student shape, one technique's loss terms, one seed; no halting, so
    every cell trains the same number of epochs."""
    student = cfg.students[cfg.student_labels().index(cell.student)]
    base = cfg.teacher.model_dump()
    teacher_cfg = TeacherConfig(**{**base, "source": str(teacher),
                                   "cache": {**base["cache"], "dir": str(cache_dir)}})
    train = cfg.train.model_copy(update={"threads": threads})
    return DistillExperiment(plugins=cfg.plugins,
                             name=f"{cfg.name}-{cell.key.replace('/', '-')}", seed=cell.seed,
                             data=cfg.data, train=train, teacher=teacher_cfg,
                             student=student.student_config(), losses=technique.losses)


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def check_unchanged(run_dir: Path, exp: DistillExperiment, cell: Cell) -> None:
    """A cell run with other settings cannot be mixed into this study's statistics."""
    from edgedistill import api

    if not (run_dir / "config.yaml").exists():
        return
    old = _flatten(api.run_config(run_dir))
    new = _flatten(yaml.safe_load(yaml.safe_dump(exp.model_dump(mode="json"))))
    changed = sorted(k for k in old.keys() | new.keys()
                     if old.get(k) != new.get(k) and k not in RUNTIME_KEYS)
    if changed:
        raise UsageError(f"cell {cell.key} in {run_dir} was run with other settings "
                         f"({', '.join(changed[:6])}); keep the study's config, or write the "
                         "changed study to a new --out")


def run_cell(job: dict[str, Any]) -> dict[str, Any]:
    """Train one cell (a top-level function, so spawned workers can run it). Errors are
    written to ``error.txt`` and returned, so one failing cell never stops the grid."""
    from contextlib import redirect_stdout

    from edgedistill.distill.run import run_distill

    run_dir = Path(job["run_dir"])
    tic = time.perf_counter()
    try:
        with folder_lock(run_dir, "cell"):
            (run_dir / "error.txt").unlink(missing_ok=True)
            exp = DistillExperiment.model_validate(job["config"])
            with open(run_dir / "train.log", "a") as log, redirect_stdout(log):
                summary = run_distill(exp, run_dir, resume=True, progress=True)
        return {"summary": summary, "seconds": time.perf_counter() - tic}
    except Busy as err:
        return {"busy": str(err)}
    except Exception as err:  # recorded per cell; the grid goes on
        (run_dir / "error.txt").write_text(traceback.format_exc())
        return {"error": f"{type(err).__name__}: {err}"}


def run_grid(jobs: list[dict[str, Any]], workers: int,
             on_result: Callable[[dict[str, Any], dict[str, Any]], None]) -> None:
    """Run every job, ``workers`` at a time; ``on_result(job, result)`` as each one ends."""
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            on_result(job, run_cell(job))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
        futures = {pool.submit(run_cell, job): job for job in jobs}
        for future in as_completed(futures):
            on_result(futures[future], future.result())

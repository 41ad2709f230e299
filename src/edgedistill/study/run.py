"""``edgedistill study``: prepare the teacher, run the grid cell by cell, write the report.

The study folder holds ``study.yaml`` (the resolved config), ``teacher.safetensors``
(the frozen teacher), ``teacher_cache/``, ``cells/STUDENT/TECHNIQUE/seedN/`` (one run
directory each) and the report files. The report is refreshed while the grid runs,
so a long study can be read before it ends.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from edgedistill.config import dump_config
from edgedistill.config.study import StudyConfig, load_study
from edgedistill.errors import UsageError
from edgedistill.study.grid import (
    Busy,
    cell_config,
    cell_dir,
    cell_state,
    check_unchanged,
    expand,
    folder_lock,
    run_grid,
)
from edgedistill.study.prepare import build_caches, check_pairs, snapshot_teacher
from edgedistill.study.progress import GridProgress
from edgedistill.study.report import write_report
from edgedistill.study.techniques import resolve_techniques

REPORT_EVERY_S = 60.0


class CellsFailed(UsageError):
    """Some cells raised; the others finished and the report covers them."""


def resolve_workers(cfg: StudyConfig) -> tuple[int, int | None]:
    """(cells at once, threads per cell). ``auto`` fills the cores on CPU and runs one
    cell at a time on a GPU; parallel cells split the cores unless threads are set."""
    import torch

    cores = os.cpu_count() or 1
    threads = cfg.train.threads
    on_gpu = cfg.train.device.startswith("cuda") or (
        cfg.train.device == "auto" and torch.cuda.is_available())
    if cfg.workers == "auto":
        workers = 1 if on_gpu else max(1, cores // (threads or 1))
    else:
        workers = cfg.workers
    if threads is None and workers > 1:
        threads = max(1, cores // workers)
    return workers, threads


def run_study(config: str | Path, out: str | Path | None = None, resume: bool = False,
              overrides: list[str] = (), workers: int | None = None, log=print) -> Path:
    """Run (or resume) the study of a YAML file into ``out``; returns REPORT.md's path."""
    cfg = load_study(config, overrides)
    if workers is not None:
        if workers < 1:
            raise UsageError(f"--workers must be >= 1, got {workers}")
        cfg = cfg.model_copy(update={"workers": workers})
    out = Path(out) if out else Path("runs") / cfg.name
    if out.exists() and any(out.iterdir()) and not resume:
        raise UsageError(f"study folder {str(out)!r} already has results; pass --resume to "
                         "continue it (finished cells are kept) or --out to write elsewhere")
    try:
        with folder_lock(out, "study folder"):
            return _run(cfg, out, reproduce_command(config, out, overrides), log)
    except Busy as err:
        raise UsageError(f"{err}; wait for that study to end or stop it first") from None


def reproduce_command(config: str | Path, out: Path, overrides: list[str]) -> str:
    sets = "".join(f" --set {item}" for item in overrides)
    return f"edgedistill study {config} --out {out}{sets}"


def _run(cfg: StudyConfig, out: Path, command: str, log) -> Path:
    import torch

    techniques = resolve_techniques(cfg)
    by_label = {t.label: t for t in techniques}
    workers, threads = resolve_workers(cfg)
    if threads:
        torch.set_num_threads(threads)
    teacher = snapshot_teacher(cfg.teacher.source, out, cfg.teacher.allow_unfinished, log)
    teacher_path = out / "teacher.safetensors"
    cache_dir = Path(cfg.teacher.cache.dir) if cfg.teacher.cache.dir else out / "teacher_cache"
    meta = {"teacher": teacher, "students": check_pairs(cfg, techniques, teacher_path),
            "command": command}
    cells = expand(cfg, techniques)
    jobs = []
    for cell in cells:
        run_dir = cell_dir(out, cell)
        exp = cell_config(cfg, cell, by_label[cell.technique], teacher_path, cache_dir, threads)
        check_unchanged(run_dir, exp, cell)
        state = cell_state(run_dir)
        if state != "done":
            jobs.append({"config": exp.model_dump(mode="json"), "run_dir": str(run_dir),
                         "cell": cell, "state": state})
    (out / "study.yaml").write_text(dump_config(cfg))
    partial = [j["cell"].key for j in jobs if j["state"] == "partial"]
    log(f"study {cfg.name}: {len(cells)} cells, {len(cells) - len(jobs)} done, "
        f"{len(jobs)} to run, {workers} at a time, {threads or torch.get_num_threads()} "
        f"thread(s) each; folder {out}")
    if partial:
        log(f"resuming from their checkpoints: {', '.join(partial)}")
    build_caches(cfg, [(j["cell"].seed, by_label[j["cell"].technique]) for j in jobs],
                 teacher_path, cache_dir, log)
    failed: list[str] = []
    last_report = [time.monotonic()]

    def on_result(job: dict[str, Any], result: dict[str, Any]) -> None:
        key = job["cell"].key
        if "summary" in result:
            s = result["summary"]
            note = " (resumed)" if job["state"] == "partial" else ""
            log(f"done {key}{note}: final acc {s['final_test_acc']:.4f} (best "
                f"{s['best_test_acc']:.4f}), {result['seconds']:.0f}s")
        else:
            failed.append(key)
            log(f"{'skipped' if 'busy' in result else 'FAILED'} {key}: "
                f"{result.get('busy') or result.get('error')}")
        if time.monotonic() - last_report[0] > REPORT_EVERY_S:
            write_report(out, cfg, techniques, meta)
            last_report[0] = time.monotonic()

    with GridProgress(jobs, cfg.train.epochs):
        run_grid(jobs, workers, on_result)
    report = write_report(out, cfg, techniques, meta)
    if failed:
        raise CellsFailed(f"{len(failed)} cell(s) did not finish ({', '.join(failed[:5])}); "
                          f"see error.txt in their folders under {out / 'cells'}, then rerun "
                          "with --resume")
    return report

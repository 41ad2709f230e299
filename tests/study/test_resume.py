"""Kill a real study process with SIGKILL mid-grid, resume it, and check that finished
cells are not redone and the half-finished cell continues from its checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time

from edgedistill.study import run_study
from tests.study.conftest import TRAIN


def cell_dirs(out):
    return sorted(p for p in (out / "cells").glob("*/*/seed*") if p.is_dir())


def test_killed_study_resumes_cell_by_cell(tmp_path, study_yaml):
    path = study_yaml(seeds=[0], train={**TRAIN, "epochs": 3, "checkpoint_every_steps": 1})
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "edgedistill.study", str(path), "--out",
                             str(out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 300
    partial = None
    while time.time() < deadline and proc.poll() is None:
        dirs = cell_dirs(out) if (out / "cells").exists() else []
        done = [d for d in dirs if (d / "summary.json").exists()]
        started = [d for d in dirs if (d / "checkpoints" / "last.pt").exists()
                   and not (d / "summary.json").exists()]
        if done and started:
            partial = started[0]
            break
        time.sleep(0.01)
    assert partial is not None, f"no finished + half-finished cell seen: {proc.stderr.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    finished = {d: (d / "summary.json").stat().st_mtime_ns for d in cell_dirs(out)
                if (d / "summary.json").exists()}
    assert len(finished) == 1 and partial not in finished

    logs = []
    run_study(path, out, resume=True, log=logs.append)
    key = partial.relative_to(out / "cells").as_posix()
    assert any(line == f"resuming from their checkpoints: {key}" for line in logs), logs
    assert any(line.startswith(f"done {key} (resumed)") for line in logs), logs
    assert not any(line.startswith(f"done {d.relative_to(out / 'cells').as_posix()}")
                   for d in finished for line in logs)
    assert {d: (d / "summary.json").stat().st_mtime_ns for d in finished} == finished
    assert all((d / "summary.json").exists() for d in cell_dirs(out))
    epochs = [json.loads(x)["epoch"] for x in (partial / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2]

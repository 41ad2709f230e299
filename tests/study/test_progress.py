"""The study's live bar counts the epochs every pending cell has written."""

import time

from edgedistill.study.grid import Cell
from edgedistill.study.progress import GridProgress


def test_bar_counts_epochs_of_running_cells(tmp_path):
    jobs = []
    for i in range(2):
        run_dir = tmp_path / f"c{i}"
        run_dir.mkdir()
        jobs.append({"run_dir": str(run_dir), "cell": Cell("s", f"t{i}", 0)})
    (tmp_path / "c0" / "metrics.jsonl").write_text('{"epoch": 0}\n{"epoch": 1}\n')
    bar = GridProgress(jobs, epochs=4, enabled=True)
    assert bar.counts() == [2, 0]
    assert bar.describe(bar.counts()) == "cells s/t0/seed0 2/4"
    with bar:
        task = bar.progress.tasks[0]
        assert task.total == 8 and task.completed == 2
        (tmp_path / "c1" / "metrics.jsonl").write_text('{"epoch": 0}\n')
        deadline = time.monotonic() + 10
        while bar.progress.tasks[0].completed != 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert bar.progress.tasks[0].completed == 3
    assert not bar._thread.is_alive()
    assert GridProgress(jobs, epochs=4, enabled=False).__enter__().progress is None

"""The grid end to end on a tiny synthetic study: every cell into its own run dir, one
teacher cache per (seed, layers) shared by the cells, resume without redoing finished
cells, refusal of mixed settings, failed cells recorded, parallel workers."""

import shutil

import pytest

from edgedistill.api import load_model
from edgedistill.errors import UsageError
from edgedistill.study import CellsFailed, run_study
from edgedistill.study.grid import folder_lock
from edgedistill.train.checkpoint import save_weights


def summaries(out):
    return {p.relative_to(out).parent.as_posix(): p.stat().st_mtime_ns
            for p in (out / "cells").glob("*/*/*/summary.json")}


def test_study_runs_shares_caches_and_resumes(tmp_path, study_yaml, tiny_teacher):
    teacher = tmp_path / "teacher.safetensors"
    shutil.copy(tiny_teacher, teacher)
    path = study_yaml(techniques=["none", "fitnet"],
                      teacher={"source": str(teacher), "cache": {"num_draws": 2}})
    out = tmp_path / "out"
    logs = []
    report = run_study(path, out, log=logs.append)
    done = summaries(out)
    assert sorted(done) == [f"cells/shallower/{t}/seed{s}" for t in ("fitnet", "none")
                            for s in (0, 1)]
    # two seeds x two hooked-layer sets (logits only; layer3): built once, reused by all
    assert len(list((out / "teacher_cache").iterdir())) == 4
    for cell in done:
        assert "teacher cache: reusing" in (out / cell / "train.log").read_text()
    assert (out / "teacher.safetensors").exists() and (out / "study.yaml").exists()
    assert len((out / "study.csv").read_text().splitlines()) == 5
    assert "| shallower | fitnet | 2 |" in report.read_text()

    with pytest.raises(UsageError, match="already has results.*--resume"):
        run_study(path, out)
    logs.clear()
    model = load_model(teacher)  # the teacher is retrained meanwhile: the study keeps its copy
    save_weights(teacher, {k: v + 1 for k, v in model.state_dict().items()}, model.spec)
    run_study(path, out, resume=True, log=logs.append)
    assert summaries(out) == done
    assert any("4 cells, 4 done, 0 to run" in line for line in logs)
    assert any("has changed since this study started" in line for line in logs)
    with pytest.raises(UsageError, match="cell shallower/none/seed0 .* other settings.*epochs"):
        run_study(path, out, resume=True, overrides=["train.epochs=3"])
    with folder_lock(out, "study folder"), pytest.raises(UsageError, match="in use by process"):
        run_study(path, out, resume=True)


def test_bad_pair_fails_before_any_cell(tmp_path, study_yaml):
    bad = {"label": "bad", "losses": [{"name": "ce"}, {
        "name": "fitnet", "student_layers": ["nope"], "teacher_layers": ["stage-1"]}]}
    with pytest.raises(UsageError, match="student shallower x technique bad: .*'nope'"):
        run_study(study_yaml(techniques=["none", bad]), tmp_path / "out")
    assert not (tmp_path / "out" / "cells").exists()


def test_failed_cell_is_recorded_and_retried(tmp_path, study_yaml, monkeypatch):
    from edgedistill.distill import run as distill_run

    real = distill_run.run_distill

    def flaky(cfg, out, **kw):
        if cfg.losses[-1].name == "kd":
            raise RuntimeError("simulated crash")
        return real(cfg, out, **kw)

    path = study_yaml(seeds=[0])
    out = tmp_path / "out"
    monkeypatch.setattr(distill_run, "run_distill", flaky)
    with pytest.raises(CellsFailed, match="1 cell.*shallower/kd/seed0.*--resume"):
        run_study(path, out)
    assert "simulated crash" in (out / "cells/shallower/kd/seed0/error.txt").read_text()
    assert "shallower/kd/seed0 (failed)" in (out / "REPORT.md").read_text()
    monkeypatch.setattr(distill_run, "run_distill", real)
    run_study(path, out, resume=True)
    assert not (out / "cells/shallower/kd/seed0/error.txt").exists()
    assert len(summaries(out)) == 2


@pytest.mark.slow  # two spawned workers import torch: ~50 s on a loaded 2-core CPU
def test_parallel_workers(tmp_path, study_yaml):
    out = tmp_path / "out"
    run_study(study_yaml(seeds=[0]), out, workers=2)
    assert len(summaries(out)) == 2

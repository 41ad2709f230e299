"""``edgedistill demo`` end to end on a small subset, and the proof that its full setting is
the study whose seeds measure its gain (configs/studies/fashion_mnist_cpu_10k.yaml)."""

import yaml

from edgedistill import demo
from edgedistill.config.study import load_study
from edgedistill.distill.provenance import teacher_provenance
from edgedistill.study.grid import Cell, cell_config
from edgedistill.study.techniques import resolve_techniques
from tests.conftest import ROOT, run_cli


def test_demo_end_to_end_on_a_subset(tmp_path):
    out = tmp_path / "demo"
    run = run_cli("demo", "--out", str(out), "--epochs", "1", "--limit-train", "512")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "edgedistill demo" in run.stdout and "kd minus scratch" in run.stdout
    report = (out / "REPORT.md").read_text()
    assert "| teacher |" in report and "| student | scratch |" in report
    assert "| student | kd |" in report and "kd minus scratch" in report
    assert (out / "accuracy.png").stat().st_size > 0
    for run_dir in ("resnet8_scratch", "resnet8_kd"):
        assert (out / run_dir / "summary.json").exists()


def test_demo_runs_the_studys_seed_zero_cells(tmp_path):
    path = ROOT / "configs" / "studies" / "fashion_mnist_cpu_10k.yaml"
    assert yaml.safe_load(path.read_text()) == demo.DEMO_STUDY
    study = load_study(path)
    techniques = {t.label: t for t in resolve_techniques(study)}
    scratch, kd = demo.demo_configs(tmp_path)
    for got, label in ((scratch, "none"), (kd, "kd")):
        want = cell_config(study, Cell("shallower", label, 0), techniques[label],
                           study.teacher.source, tmp_path / "teacher_cache", threads=None)
        assert got == want
    assert kd.data.limit_train == 10000 and kd.train.epochs == 8 and kd.data.limit_test is None
    assert teacher_provenance(kd.teacher.source)["finished"] is True

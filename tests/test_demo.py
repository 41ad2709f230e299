"""``edgedistill demo`` end to end on a small subset (the README's main command runs the
same code with 20,000 images and 3 epochs), and its choice of teacher."""

from edgedistill import demo
from tests.conftest import run_cli


def test_demo_end_to_end_on_a_subset(tmp_path):
    out = tmp_path / "demo"
    run = run_cli("demo", "--out", str(out), "--epochs", "1", "--limit-train", "512")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "edgedistill demo" in run.stdout and "hint+kd" in run.stdout
    report = (out / "REPORT.md").read_text()
    assert "| teacher |" in report and "| student | scratch |" in report
    assert "hint+kd minus scratch" in report
    assert (out / "accuracy.png").stat().st_size > 0
    for run_dir in ("resnet8_scratch", "resnet8_hint_kd"):
        assert (out / run_dir / "summary.json").exists()


def test_demo_picks_the_most_accurate_shipped_teacher(monkeypatch):
    shipped = {"resnet20-fashion_mnist": {"test_acc": 0.94},
               "resnet56-fashion_mnist": {"test_acc": 0.93}}
    monkeypatch.setattr(demo.pretrained, "manifest", lambda: shipped)
    assert demo.pick_teacher() == "resnet20-fashion_mnist"
    shipped["resnet56-fashion_mnist"]["test_acc"] = 0.95
    assert demo.pick_teacher() == "resnet56-fashion_mnist"
    shipped["resnet56-fashion_mnist"]["test_acc"] = 0.94  # a tie: the cheaper teacher
    assert demo.pick_teacher() == "resnet20-fashion_mnist"

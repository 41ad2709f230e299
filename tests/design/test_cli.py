"""``design`` and ``profile-device`` through typer: reports and files on success, exit 2
with one line naming the option on every usage error."""

import json

import pytest
from typer.testing import CliRunner

from edgedistill.design.cli import design_app, main
from edgedistill.design.profiles import load_profile

TEACHER = "zoo:resnet20-fashion_mnist"
FAST = ["--widths", "0.5,1", "--no-zoo", "--input-shape", "1x28x28"]


def test_design_prints_report_and_writes_files(tmp_path):
    out = tmp_path / "d"
    result = CliRunner().invoke(design_app, [
        "design", "--teacher", TEACHER, "--storage", "400kB", "--speed", "4GFLOPS",
        "--max-time", "10ms", "--measure", "2", "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    assert "## Chosen student: resnet20-b3_1_1" in result.output
    assert "## Pareto front" in result.output and "## Rejected candidates" in result.output
    assert "storage 1.09 MB > 400 kB; latency 15.5 ms > 10 ms" in result.output
    saved = json.loads((out / "design.json").read_text())
    assert saved["chosen"]["name"] == "resnet20-b3_1_1" and len(saved["candidates"]) == 54
    measured = [c for c in saved["candidates"] if c["measured_ms"]]
    assert len(measured) == 2 and (out / "onnx" / "resnet20-b3_1_1.onnx").exists()


def test_profile_device_then_design_reports_prediction_error(tmp_path):
    path = tmp_path / "here.yaml"
    made = CliRunner().invoke(design_app, ["profile-device", "--quick", "--out", str(path),
                                           "--storage", "400kB"])
    assert made.exit_code == 0, made.output
    assert "median fit error" in made.output and "conv" in made.output
    profile = load_profile(path)
    assert profile.latency_model is not None and profile.storage_bytes == 400_000
    result = CliRunner().invoke(design_app, [
        "design", "--teacher", TEACHER, "--profile", str(path), "--max-time", "50ms",
        "--measure", "3", "--out", str(tmp_path / "d"), *FAST])
    assert result.exit_code == 0, result.output
    assert "## Predicted vs measured latency" in result.output
    assert "Median absolute prediction error over 3 candidates" in result.output


@pytest.mark.parametrize("args,needle", [
    (["--storage", "2Mb"], "--storage: '2Mb' is in bits"),
    (["--storage", "1MB", "--max-time", "5ms"], "--max-time needs --speed"),
    (["--speed", "5GB", "--storage", "1MB"], "--speed: '5GB' is not a speed"),
    (["--profile", "nowhere"], "neither built in (rpi4, jetson-nano, mcu)"),
    (["--storage", "1MB", "--input-shape", "28x28"], "expected CxHxW"),
    (["--storage", "1MB", "--widths", "0,1"], "--widths"),
    (["--storage", "1MB", "--set", "train.epochs=1"], "apply to --train"),
    (["--storage", "1kB"], "no student fits storage 1 kB"),
])
def test_usage_errors_exit_2_with_one_line(tmp_path, capsys, args, needle):
    with pytest.raises(SystemExit) as exit_:
        main(["design", "--teacher", TEACHER, "--out", str(tmp_path / "d"), "--measure", "0",
              *FAST, *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

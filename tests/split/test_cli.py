"""``edgedistill split train|plan|infer|serve`` through typer, and their usage errors."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from edgedistill.split.cli import main, split_app
from edgedistill.split.model import read_meta
from tests.split.conftest import tiny_split_config

runner = CliRunner()


def test_train_with_generalized_hnd_and_kd_stage(tmp_path, teacher_file):
    cfg = tiny_split_config(str(teacher_file), **{"hnd.tail_layers": ["layer2"],
                                                  "finetune.epochs": 1,
                                                  "bottleneck.channels": [1]})
    path = tmp_path / "split.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    result = runner.invoke(split_app, ["train", str(path), "--out", str(out),
                                       "--set", "wire.per_channel=true"])
    assert result.exit_code == 0, result.output
    assert "| c1 " in result.output and "| c1-kd " in result.output
    meta = read_meta(out)
    assert [b["name"] for b in meta["bottlenecks"]] == ["c1", "c1-kd"]
    assert meta["wire"]["per_channel"] is True
    hnd = json.loads((out / "c1/metrics.jsonl").read_text().splitlines()[0])
    kd = json.loads((out / "c1-kd/metrics.jsonl").read_text().splitlines()[0])
    assert "loss/ghnd/layer2" in hnd and "loss/kd" in kd


def test_plan_writes_table_json_and_plot(split_run, teacher_file, tmp_path):
    out = tmp_path / "plan"
    result = runner.invoke(split_app, ["plan", str(split_run), "--bandwidth", "0.5,5,50",
                                       "--rtt-ms", "4", "--rpc-overhead-ms", "1.5",
                                       "--local-model", str(teacher_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    plan = json.loads((out / "plan.json").read_text())
    assert (out / "latency_vs_bandwidth.png").stat().st_size > 1000
    names = [o["name"] for o in plan["options"]]
    assert names[:3] == ["teacher on device", "local resnet8", "send png"]
    assert "split c2" in names
    for row in plan["rows"]:
        for o in plan["options"]:
            expected = o["device_ms"]
            if o["remote"]:
                expected += 4 + 1.5 + 8 * (o["up_bytes"] + o["down_bytes"]) / (
                    1000 * row["mbit"]) + o["server_ms"]
            assert row["latency_ms"][o["name"]] == pytest.approx(expected)
    assert plan["measured"]["request_overhead"] == {"method": "given", "overhead_ms": 1.5}
    for o in plan["options"]:
        assert o["breakdown"]["overhead_ms"] == (1.5 if o["remote"] else 0.0)
        assert o["breakdown"]["device_ms"] == o["device_ms"]
    assert plan["measured"]["teacher"]["device_step_ms"] > plan["measured"]["normalize_ms"] > 0
    assert "request overhead ms" in result.output
    assert "| 0.5 |" in result.output


@pytest.mark.parametrize("args,needle", [
    (["plan", "RUN", "--bandwidth", "1,fast"], "--bandwidth"),
    (["plan", "RUN", "--device-profile", "mars"], "neither built in"),
    (["serve", "RUN", "--token-file", "/nonexistent/token"], "does not exist"),
    (["infer", "RUN", "/nonexistent.png", "--server", "http://127.0.0.1:9",
      "--token-file", "TOKEN"], "cannot read image"),
    (["plan", "/nonexistent/run"], "not a split run directory"),
    (["train", "/nonexistent.yaml"], "does not exist"),
])
def test_usage_errors_exit_2_with_one_line(args, needle, split_run, token_file, capsys):
    args = [str(split_run) if a == "RUN" else str(token_file) if a == "TOKEN" else a
            for a in args]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_weak_token_is_refused(tmp_path, split_run, capsys):
    weak = tmp_path / "weak"
    weak.write_text("secret")
    with pytest.raises(SystemExit):
        main(["serve", str(split_run), "--token-file", str(weak)])
    assert "at least 16 characters" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["slowdown: [1, 2\nfoo: : bar\n", "a: b\n\tc: d\n"])
def test_profile_with_a_yaml_error_is_one_line_naming_the_file(text, split_run, tmp_path,
                                                               capsys):
    profile = tmp_path / "device.yaml"
    profile.write_text(text)
    with pytest.raises(SystemExit) as exit_:
        main(["plan", str(split_run), "--device-profile", str(profile)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and str(profile) in err and "line " in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_infer_help_says_which_images_it_takes():
    result = runner.invoke(split_app, ["infer", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for needle in ("PNG", "JPEG", "resized", "aspect ratio", "grey or RGB"):
        assert needle in result.output

"""The real ``edgedistill`` command in a subprocess: usage errors exit 2 with one
clear line and no traceback; listings and eval work end to end."""

import json

from tests.conftest import run_cli, tiny_train_config


def assert_usage_error(result, *needles):
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_missing_config_file(tmp_path):
    assert_usage_error(run_cli("train", str(tmp_path / "missing.yaml")), "does not exist")


def test_unknown_key_and_bad_value(tmp_path, write_yaml):
    cfg = write_yaml(tiny_train_config(**{"train.epochz": 1}))
    assert_usage_error(run_cli("train", str(cfg)), "unknown key 'train.epochz'", "epochs")
    cfg2 = write_yaml(tiny_train_config(**{"train.epochs": -1}), "c2.yaml")
    assert_usage_error(run_cli("train", str(cfg2)), "train.epochs")


def test_unknown_model_lists_choices(tmp_path, write_yaml):
    cfg = write_yaml(tiny_train_config(**{"model.name": "resnet9000"}))
    assert_usage_error(run_cli("train", str(cfg), "--out", str(tmp_path / "r")),
                       "unknown model 'resnet9000'", "resnet56")


def test_bad_set_override_and_unknown_option(write_yaml):
    cfg = write_yaml(tiny_train_config())
    assert_usage_error(run_cli("train", str(cfg), "--set", "train.epochs"), "KEY=VALUE")
    assert run_cli("train", str(cfg), "--bogus").returncode == 2


def test_listings():
    models = run_cli("models")
    assert models.returncode == 0 and "resnet56" in models.stdout and "wrn_40_2" in models.stdout
    losses = run_cli("losses")
    assert losses.returncode == 0
    for name in ("kd", "fitnet", "crd", "dkd", "reviewkd", "hint+kd"):
        assert name in losses.stdout
    datasets = run_cli("datasets")
    assert datasets.returncode == 0 and "fashion_mnist" in datasets.stdout
    zoo = run_cli("zoo")  # piped, as in a script: names are printed whole, ready to copy
    assert zoo.returncode == 0
    for name in ("resnet20-fashion_mnist", "resnet56-fashion_mnist"):
        assert name in zoo.stdout
    assert "0.9410" in zoo.stdout and "…" not in zoo.stdout


def test_train_then_eval_end_to_end(tmp_path, write_yaml):
    cfg = write_yaml(tiny_train_config(**{"train.epochs": 1}))
    out = tmp_path / "run"
    trained = run_cli("train", str(cfg), "--out", str(out))
    assert trained.returncode == 0, trained.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_run"] == 1 and 0.0 < summary["final_test_acc"] <= 1.0
    assert (out / "plots" / "curves.png").stat().st_size > 1000
    assert (out / "checkpoints" / "last.pt").exists()
    evaluated = run_cli("eval", str(out), "--limit-test", "256")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "accuracy" in evaluated.stdout and "params" in evaluated.stdout


def test_eval_of_corrupt_weights_is_a_usage_error(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x00" * 64)
    assert_usage_error(run_cli("eval", str(bad), "--dataset", "fashion_mnist"), "corrupt")


def test_every_part_is_reachable_from_the_main_command():
    top = run_cli("--help")
    assert top.returncode == 0
    for command in ("train", "distill", "study", "design", "profile-device", "split", "export"):
        assert command in top.stdout
    split = run_cli("split", "--help")
    assert split.returncode == 0
    for command in ("train", "serve", "infer", "plan"):
        assert command in split.stdout

import pytest

from edgedistill.config import (
    DistillExperiment,
    TrainExperiment,
    apply_overrides,
    load_config,
    validate,
)
from edgedistill.errors import UsageError
from tests.conftest import tiny_train_config


def test_valid_config_loads_with_defaults(write_yaml):
    cfg = load_config(write_yaml(tiny_train_config()), TrainExperiment)
    assert cfg.model.name == "resnet8"
    assert cfg.train.schedule.name == "cosine"
    assert cfg.data.augment.enabled


def test_unknown_key_names_key_and_allowed_keys(write_yaml):
    raw = tiny_train_config(**{"train.epoch": 3})
    with pytest.raises(UsageError) as err:
        load_config(write_yaml(raw), TrainExperiment)
    msg = str(err.value)
    assert "unknown key 'train.epoch'" in msg
    assert "epochs" in msg and "optimizer" in msg


def test_bad_literal_lists_allowed_values():
    raw = tiny_train_config(**{"train.optimizer.name": "rmsprop"})
    with pytest.raises(UsageError) as err:
        validate(raw, TrainExperiment)
    assert "train.optimizer.name" in str(err.value)
    assert "'sgd'" in str(err.value) and "'adamw'" in str(err.value)


def test_missing_required_key():
    with pytest.raises(UsageError, match="missing key 'model'"):
        validate({"name": "x"}, TrainExperiment)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", TrainExperiment)
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_config(bad, TrainExperiment)


def test_overrides_parse_yaml_values():
    raw = apply_overrides({"train": {"epochs": 3}},
                          ["train.epochs=7", "data.limit_train=100", "train.grad_clip=null",
                           "losses=[{name: kd}]"])
    assert raw["train"]["epochs"] == 7
    assert raw["data"]["limit_train"] == 100
    assert raw["train"]["grad_clip"] is None
    assert raw["losses"] == [{"name": "kd"}]
    with pytest.raises(UsageError, match="KEY=VALUE"):
        apply_overrides({}, ["train.epochs"])


def test_student_needs_exactly_one_of_name_or_derive():
    base = {"teacher": {"source": "zoo:x"}}
    with pytest.raises(UsageError, match="exactly one"):
        validate({**base, "student": {"name": "resnet8", "derive": "narrower"}},
                 DistillExperiment)
    with pytest.raises(UsageError, match="exactly one"):
        validate({**base, "student": {}}, DistillExperiment)
    cfg = validate({**base, "student": {"derive": "both", "width": 0.5}}, DistillExperiment)
    assert cfg.student.derive == "both"

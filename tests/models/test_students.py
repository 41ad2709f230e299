"""Student derivation: the defaults reproduce the KD literature's pairs and shrink the model."""

import pytest
import torch

from edgedistill.errors import UsageError
from edgedistill.models import count_params, create_model, derive_student, student_name


def _params(spec: dict) -> int:
    with torch.device("meta"):
        return count_params(create_model(**spec))


@pytest.mark.parametrize(("teacher", "shallower"), [
    ("resnet56", "resnet20"),
    ("resnet110", "resnet32"),
    ("resnet20", "resnet8"),
    ("resnet32x4", "resnet8x4"),
    ("wrn_40_2", "wrn_16_2"),
    ("wrn_28_10", "wrn_10_10"),
    ("resnet34", "resnet10"),
    ("resnet50", "resnet26"),
])
def test_default_shallower_student(teacher, shallower):
    spec = derive_student({"name": teacher, "num_classes": 10, "in_channels": 1}, "shallower")
    assert student_name(spec) == shallower
    assert spec["num_classes"] == 10 and spec["in_channels"] == 1


@pytest.mark.parametrize(("mode", "name"), [
    ("shallower", "resnet20"), ("narrower", "resnet56-w0.5"), ("both", "resnet20-w0.5"),
])
def test_every_mode_gives_a_smaller_model(mode, name):
    teacher = {"name": "resnet56", "num_classes": 10, "in_channels": 3}
    spec = derive_student(teacher, mode)
    assert student_name(spec) == name
    assert _params(spec) < _params(teacher)


def test_standard_student_keeps_a_clean_spec():
    spec = derive_student({"name": "resnet56", "in_channels": 3}, "both")
    assert spec == {"name": "resnet20", "in_channels": 3, "width": 0.5}


def test_explicit_depth_and_width():
    spec = derive_student({"name": "resnet56"}, "both", depth=26, width=0.25)
    assert spec == {"name": "resnet56", "blocks": [4, 4, 4], "width": 0.25}
    assert student_name(spec) == "resnet26-w0.25"
    assert student_name(derive_student({"name": "resnet34"}, "shallower", depth=18)) == "resnet18"


def test_narrower_multiplies_the_teachers_width():
    spec = derive_student({"name": "mobilenetv2_tiny"}, "narrower")
    assert spec["width_mult"] == pytest.approx(0.175)
    assert student_name(spec) == "mobilenetv2-w0.175"
    assert _params(spec) < _params({"name": "mobilenetv2_tiny"})


def test_unsupported_derivation_says_who_supports_it():
    with pytest.raises(UsageError, match=r"narrower .*'resnet18'.*cifar_resnet.*wrn"):
        derive_student({"name": "resnet18"}, "narrower")
    with pytest.raises(UsageError, match="shallower works for: cifar_resnet"):
        derive_student({"name": "mobilenetv2"}, "shallower")
    with pytest.raises(UsageError, match="densenet"):
        derive_student({"name": "densenet121"}, "both")


@pytest.mark.parametrize(("spec", "mode", "kw"), [
    ({"name": "resnet8"}, "shallower", {}),
    ({"name": "resnet56"}, "shallower", {"depth": 56}),
    ({"name": "resnet56"}, "shallower", {"depth": 21}),
    ({"name": "resnet56"}, "narrower", {"width": 1.5}),
    ({"name": "resnet56"}, "narrower", {"depth": 20}),
    ({"name": "resnet56"}, "shallower", {"width": 0.5}),
    ({"name": "resnet56"}, "thinner", {}),
    ({"name": "resnet57"}, "shallower", {}),
    ({"name": "resnet18"}, "shallower", {"depth": 12}),
])
def test_impossible_students_are_usage_errors(spec, mode, kw):
    with pytest.raises(UsageError):
        derive_student(spec, mode, **kw)

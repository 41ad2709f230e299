"""Counting from the spec gives what building and tracing the model gives: the same
parameters, the same op list (kinds, FLOPs, bytes, channels, in order) and the same peak,
on candidates of every described family; other families are traced without weights."""

import random

import pytest
import torch

from edgedistill.design.analytic import make_divisible, structure
from edgedistill.design.search import family_specs, search, traced, zoo_specs
from edgedistill.design.trace import trace
from edgedistill.models import count_params, create_model

WIDTHS = (0.25, 0.35, 0.375, 0.5, 0.75, 1.0)
TEACHERS = ["resnet56", "resnet32x4", "wrn_40_2", "wrn_16_1", "mobilenetv2"]


def _sample(teacher: str, extra: dict, k: int = 5) -> list[dict]:
    specs = family_specs(create_model(teacher, **extra), WIDTHS)
    return random.Random(teacher).sample(specs, min(k, len(specs)))


@pytest.mark.parametrize("extra", [{}, {"num_classes": 7, "in_channels": 3}])
@pytest.mark.parametrize("teacher", TEACHERS)
def test_counts_equal_the_traced_model(teacher, extra):
    specs = _sample(teacher, extra) + zoo_specs(create_model(teacher, **extra))[:3]
    channels = extra.get("in_channels", 1)
    for spec in specs:
        model = create_model(**spec)
        for shape in [(1, channels, 28, 28), (2, channels, 9, 13)]:
            counted = structure(spec, shape)
            assert counted is not None, spec
            assert counted == (count_params(model), trace(model, shape)), (spec, shape)


def test_torchvision_rounding():
    from torchvision.models._utils import _make_divisible

    for v in [0.35 * c for c in (16, 24, 32, 96, 320, 1280)] + [3.0, 12.0, 100.5]:
        assert make_divisible(v) == _make_divisible(v, 8)


def test_what_is_not_described_is_traced():
    spec = {"name": "resnet18", "small_input": True, "blocks": [1, 1, 1, 1]}
    assert structure(spec, (1, 1, 28, 28)) is None
    assert structure({"name": "resnet8"}, (1, 3, 28, 28)) is None  # the model must reject it
    model = create_model(**spec)
    params, result = traced(spec, (1, 1, 28, 28))
    assert params == count_params(model) and result == trace(model, (1, 1, 28, 28))


def test_a_model_that_cannot_run_reports_the_cpu_error():
    from edgedistill.design.profiles import DeviceProfile

    teacher = create_model("densenet121").eval()  # stride 32: 28 px pools down to nothing
    d = search(teacher, "densenet121", (1, 28, 28), DeviceProfile(storage_bytes=10 ** 9),
               zoo=False)
    with pytest.raises(RuntimeError) as err, torch.no_grad():
        teacher(torch.zeros(1, 1, 28, 28))
    assert [c.reasons for c in d.candidates] == [
        [f"does not run on a 1x28x28 input: {str(err.value).splitlines()[0]}"]]

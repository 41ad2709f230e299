"""Parameters, bytes and FLOPs against numbers worked out by hand or from the literature."""

import pytest
import torch
from torch import nn

from edgedistill.errors import UsageError
from edgedistill.models import count_flops, count_params, create_model, model_bytes, summarize


def test_conv_by_hand():
    conv = nn.Conv2d(1, 8, 3, padding=1)
    assert count_params(conv) == 8 * 9 + 8
    assert count_flops(conv, (1, 28, 28)) == 2 * 8 * 9 * 28 * 28
    assert count_flops(conv, (4, 1, 28, 28)) == 4 * 2 * 8 * 9 * 28 * 28


def test_linear_and_bytes_by_hand():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    params = 784 * 10 + 10
    assert count_params(model) == params
    assert [model_bytes(model, p) for p in ("fp32", "fp16", "int8")] == [
        4 * params, 2 * params, params]
    assert summarize(model, (1, 28, 28)) == {
        "params": params, "bytes_fp32": 4 * params, "bytes_fp16": 2 * params,
        "bytes_int8": params, "flops": 2 * 784 * 10, "macs": 784 * 10}


def test_resnet20_matches_the_literature():
    """He et al. 2016 / CRD: ResNet-20 on CIFAR has 0.27M parameters and ~41M MACs."""
    info = summarize(create_model("resnet20", in_channels=3), (3, 32, 32))
    assert info["params"] == pytest.approx(0.27e6, rel=0.05)
    assert info["macs"] == pytest.approx(41e6, rel=0.05)


def test_counting_leaves_the_training_mode_alone():
    model = create_model("resnet8")
    count_flops(model, (1, 28, 28))
    assert model.training


@pytest.mark.parametrize(("call", "match"), [
    (lambda m: model_bytes(m, "fp8"), "fp32, fp16, int8"),
    (lambda m: count_flops(m, (28, 28)), "input_shape"),
])
def test_bad_arguments_are_usage_errors(call, match):
    with pytest.raises(UsageError, match=match):
        call(nn.Conv2d(1, 1, 1))


def test_flops_scale_with_width():
    with torch.no_grad():
        full = count_flops(create_model("resnet20"), (1, 32, 32))
        half = count_flops(create_model("resnet20", width=0.5), (1, 32, 32))
    assert half == pytest.approx(full / 4, rel=0.05)

"""Splitting reproduces the teacher bit for bit, refuses cuts that would not, and shares
the teacher's modules (no copies)."""

from __future__ import annotations

import pytest
import torch

from edgedistill.errors import UsageError
from edgedistill.models import create_model
from edgedistill.split.bottleneck import BottleneckHead
from edgedistill.split.model import SplitModel, head_output_shape
from edgedistill.split.splitter import split_model, split_points

CASES = [  # name, options, input size, split points to test (None: first, middle, last)
    ("resnet8", {}, 16, ["layer1", "layer2.0", "stage2", "avgpool"]),
    ("wrn_16_1", {}, 16, ["layer1.0", "layer2", "relu"]),
    ("resnet18", {"small_input": True}, 16, ["maxpool", "layer1.1", "layer3"]),
    ("resnet50", {"small_input": True}, 16, ["layer1.0", "layer2"]),
    ("densenet121", {"small_input": True}, 16,
     ["features.denseblock1", "features.transition1", "features.transition2.conv"]),
    ("mobilenetv2_tiny", {}, 16, ["features.3", "features.6", "features.17"]),
]


@pytest.mark.parametrize("name,options,size,points", CASES, ids=[c[0] for c in CASES])
def test_split_reproduces_teacher_exactly(name, options, size, points):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=3, **options).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref = model(x)
        for at in points:
            head, tail = split_model(model, at)
            assert torch.equal(tail(head(x)), ref), at
    teacher_params = {id(p) for p in model.parameters()}
    assert {id(p) for p in tail.parameters()} <= teacher_params


def test_every_listed_point_splits_exactly():
    torch.manual_seed(0)
    model = create_model("resnet8", in_channels=1).eval()
    x = torch.randn(2, 1, 16, 16)
    points = split_points(model)
    assert points[:4] == ["conv1", "bn1", "relu", "layer1"]
    with torch.no_grad():
        ref = model(x)
        for at in points:
            head, tail = split_model(model, at)
            assert torch.equal(tail(head(x)), ref), at


@pytest.mark.parametrize("at,needle", [
    ("layer1.0.conv1", "residual connection spans the cut"),
    ("layer9", "no such module"),
    ("layr2", "did you mean layer2"),
])
def test_bad_split_points_are_refused_with_choices(at, needle):
    model = create_model("resnet8", in_channels=1)
    with pytest.raises(UsageError, match="valid split points: conv1") as err:
        split_model(model, at)
    assert needle in str(err.value)


def test_densenet_refuses_cut_inside_dense_block():
    model = create_model("densenet121", small_input=True)
    with pytest.raises(UsageError, match="residual"):
        split_model(model, "features.denseblock1.denselayer2")


def test_keep_may_not_contain_the_split_point():
    model = create_model("resnet8", in_channels=1)
    with pytest.raises(UsageError, match="contains the split point"):
        split_model(model, "layer2.0", keep=["layer2"])


def test_split_model_trains_only_the_head():
    torch.manual_seed(0)
    teacher = create_model("resnet8", in_channels=1)
    shape = head_output_shape(teacher, "layer2", (1, 16, 16))
    assert shape == (32, 8, 8)
    head = BottleneckHead((1, 16, 16), shape, channels=3, width=8, extra_downsample=1)
    assert head.bottleneck_shape == (3, 4, 4)
    model = SplitModel(teacher, "layer2", head).train()
    assert not teacher.training and model.head.training
    assert all(not p.requires_grad for p in teacher.parameters())
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    model(torch.randn(4, 1, 16, 16)).sum().backward()
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert all(p.grad is not None for p in head.parameters())
    assert set(model.state_dict()) == {f"head.{k}" for k in head.state_dict()} | {
        f"teacher.{k}" for k in teacher.state_dict()}


def test_bottleneck_head_needs_a_feature_map():
    with pytest.raises(UsageError, match="feature map"):
        BottleneckHead((1, 16, 16), (64,), channels=2)
    with pytest.raises(UsageError, match="below 1 pixel"):
        BottleneckHead((1, 16, 16), (16, 16, 16), channels=2, extra_downsample=6)

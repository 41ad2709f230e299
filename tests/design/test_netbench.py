"""The calibration networks record the ops the tracer records for the same zoo network,
so their times constrain the same coefficients the candidates are predicted with."""

import pytest

from edgedistill.design.microbench import GraphBuilder
from edgedistill.design.netbench import PER_FAMILY, basic_net, inverted_net, networks
from edgedistill.design.trace import trace
from edgedistill.models import create_model


def _ops(build) -> tuple:
    b = GraphBuilder(1)
    x, c, s = build(b)
    b.head(x, c, s, 10)
    return tuple(b.ops)


@pytest.mark.parametrize("width", [0.35, 1.0])
def test_basic_blocks_as_cifar_resnet(width):
    ops = _ops(lambda b: basic_net(b, 1, 28, width, 16, 16, [2, 1, 3], preact=False))
    model = create_model("resnet20", width=width, blocks=[2, 1, 3])
    assert ops == trace(model, (1, 1, 28, 28)).ops


def test_preactivation_blocks_as_wrn():
    ops = _ops(lambda b: basic_net(b, 3, 32, 0.5, 16, 32, [2, 2, 2], preact=True))
    model = create_model("wrn_16_2", width=0.5, in_channels=3)
    assert ops == trace(model, (1, 3, 32, 32)).ops


def test_inverted_blocks_as_mobilenetv2():
    ops = _ops(lambda b: inverted_net(b, 1, 28, 0.5, [1, 2, 3, 4, 3, 3, 1], 1280))
    assert ops == trace(create_model("mobilenetv2", width_mult=0.5), (1, 1, 28, 28)).ops


def test_networks_are_seeded_and_span_the_families():
    first = [(name, ops) for name, _, ops in networks(1, 2)]
    assert first == [(name, ops) for name, _, ops in networks(1, 2)]
    names = [name for name, _, _ in networks(1)]
    assert len(names) == 3 * PER_FAMILY == len(set(names))

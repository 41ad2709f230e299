"""The layer trace (FLOPs, fusions, activation memory) and the latency model fitted on
ONNX Runtime micro-benchmarks of this machine."""

from collections import Counter

import pytest
import torch
from torch import nn

from edgedistill.design.latency import LatencyModel, OpCost, fit, padded_flops
from edgedistill.design.microbench import Sample, conv_graph, graphs
from edgedistill.design.trace import Op, trace
from edgedistill.models import count_flops, create_model


@pytest.mark.parametrize("name", ["resnet8", "mobilenetv2_tiny", "wrn_16_1"])
def test_trace_flops_match_the_flop_counter(name):
    model = create_model(name)
    ops = trace(model, (1, 1, 28, 28)).ops
    assert sum(op.flops for op in ops) == count_flops(model, (1, 28, 28))


def test_batchnorm_and_activations_fold_into_convolutions():
    kinds = Counter(op.kind for op in trace(create_model("resnet8"), (1, 1, 28, 28)).ops)
    assert kinds == {"conv": 7, "pwconv": 2, "conv_add": 3, "pool": 1, "linear": 1}
    mobile = Counter(op.kind for op in trace(create_model("mobilenetv2_tiny"), (1, 1, 28, 28)).ops)
    assert mobile["dwconv"] == 17 and "eltwise" not in mobile
    wrn = Counter(op.kind for op in trace(create_model("wrn_16_1"), (1, 1, 28, 28)).ops)
    assert wrn["eltwise"] > 0  # pre-activation BN-ReLU follows an add, not a conv


def test_peak_activation_memory_of_a_sequential_net():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))
    # conv1 holds input (64) + output (256); conv2 holds 256 + 128 = 384 elements
    assert trace(net, (1, 1, 8, 8)).peak_activation_elements == 384


def test_benchmark_graphs_record_the_ops_they_run():
    model, ops = conv_graph(1, 16, 32, 28, 3, 2, False, 3)
    assert [op.kind for op in ops] == ["conv"] * 3
    assert ops[0].flops == 2 * 32 * 14 * 14 * 16 * 9 and ops[1].cin == 32
    assert sum(1 for _ in graphs(1, quick=True)) < sum(1 for _ in graphs(1))


def test_fit_recovers_a_known_model():
    truth = LatencyModel(call_us=20, ops={
        "conv": OpCost(per_op_us=5, us_per_mflop=12, us_per_kb=0.01),
        "add": OpCost(per_op_us=2, us_per_kb=0.05)})
    samples = []
    for i in range(1, 9):
        for reps in (1, 3):
            ops = tuple([Op("conv", 1_000_000 * i, 4000 * (i % 3 + 1), 16, 16)] * reps
                        + [Op("add", 0, 3000 * (9 - i))] * (i % 2 + 1))
            samples.append(Sample(f"s{i}{reps}", ops, truth.predict_ms(ops)))
    fitted = fit(samples, threads=1, batch=1)
    assert fitted.fit_median_error < 1e-6
    probe = [Op("conv", 7_500_000, 9000, 16, 16), Op("add", 0, 5000)]
    assert fitted.predict_ms(probe) == pytest.approx(truth.predict_ms(probe), rel=1e-4)


def test_channel_padding():
    op = Op("conv", 1000, 0, 12, 12)
    assert padded_flops(op, 1) == 1000 and padded_flops(op, 8) == pytest.approx(1000 * 16 * 16
                                                                                 / 144)
    stem = Op("conv", 1000, 0, 1, 16)
    assert padded_flops(stem, 8) == 1000


def test_measured_model_on_this_machine(quick_latency_model):
    m = quick_latency_model
    assert m.benchmarks > 40 and m.fit_median_error < 0.5 and m.measured_on
    small = conv_graph(1, 16, 16, 28, 3, 1, False, 1)[1]
    big = conv_graph(1, 64, 64, 28, 3, 1, False, 1)[1]
    assert m.predict_ms(big) > 2 * m.predict_ms(small)
    torch.manual_seed(0)
    r8 = m.predict_ms(list(trace(create_model("resnet8"), (1, 1, 28, 28)).ops))
    r20 = m.predict_ms(list(trace(create_model("resnet20"), (1, 1, 28, 28)).ops))
    assert r20 > 1.5 * r8 > 0

"""The layer trace (FLOPs, fusions, activation memory) and the latency model fitted on
ONNX Runtime micro-benchmarks of this machine."""

from collections import Counter

import pytest
import torch
from torch import nn

from edgedistill.design.latency import (
    LatencyModel,
    OpCost,
    boundary_bytes,
    fit,
    op_class,
    padded_flops,
)
from edgedistill.design.microbench import Sample, conv_graph, graphs
from edgedistill.design.profiles import load_profile
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
    assert mobile["conv_act"] == 35  # ReLU6 after the stem, 17 depthwise, 16 expansions, head
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


def test_kernel_classes_follow_the_blocked_layout():
    def conv(cin, kind="conv"):
        return Op(kind, 1000, 100, cin, 32, 3 if kind != "pwconv" else 1, 1, 8, 8)

    assert [op_class(conv(c), 1, 16) for c in (3, 12, 16, 22, 24)] == [
        "conv_narrow", "conv_narrow", "conv", "conv_nchw", "conv"]
    assert op_class(conv(3), 0, 16) == "conv"  # a stem reads the graph's plain input as is
    assert op_class(conv(10, "pwconv"), 2, 8) == "pwconv_nchw"
    assert op_class(conv(6, "dwconv"), 3, 16) == "dwconv_nchw"
    assert {op_class(conv(c), 1, 1) for c in (3, 22)} == {"conv"}
    assert op_class(Op("add", 0, 10), 1, 16) == "add"


def test_boundary_conversion_only_where_a_blocked_conv_meets_the_graph():
    ops = conv_graph(1, 16, 16, 8, 3, 1, False, 2)[1]  # 16 x 8 x 8 in and out
    assert boundary_bytes(ops, 16) == 4 * 2 * 16 * 64
    narrow = conv_graph(1, 8, 16, 8, 3, 1, False, 1)[1]
    assert boundary_bytes(narrow, 16) == 4 * 16 * 64  # the input is read as it is
    assert boundary_bytes(trace(create_model("resnet8"), (1, 1, 28, 28)).ops, 16) == 0


def test_fit_recovers_kernel_classes_and_boundary():
    truth = LatencyModel(call_us=8, channel_block=16, boundary_us_per_kb=0.05, ops={
        "conv": OpCost(per_op_us=3, us_per_mflop=6, us_per_kb=0.004),
        "conv_narrow": OpCost(per_op_us=5, us_per_mflop=12),
        "conv_nchw": OpCost(per_op_us=2, us_per_mflop=9, us_per_kb=0.5)})
    samples = []
    for cin, cout, h in [(4, 16, 28), (8, 8, 28), (12, 12, 14), (16, 16, 28), (32, 32, 14),
                         (64, 64, 7), (22, 22, 14), (18, 36, 7), (6, 12, 28), (48, 48, 8)]:
        for reps in (1, 2, 3):
            ops = tuple(conv_graph(1, cin, cout, h, 3, 1, False, reps)[1])
            samples.append(Sample(f"c{cin}-{cout}-{h}-{reps}", ops, truth.predict_ms(ops)))
    fitted = fit(samples, threads=1, batch=1)
    assert fitted.channel_block == 16 and fitted.fit_median_error < 1e-6
    probe = tuple(conv_graph(1, 20, 40, 16, 3, 1, False, 2)[1])
    assert fitted.predict_ms(probe) == pytest.approx(truth.predict_ms(probe), rel=1e-3)


def test_a_profile_fitted_before_the_classes_predicts_as_it_did():
    model = load_profile("configs/devices/dev_machine_measured.yaml").latency_model
    assert "conv_narrow" not in model.ops and model.boundary_us_per_kb == 0
    ops = trace(create_model("resnet20", width=0.375), (1, 1, 28, 28)).ops
    by_kind = model.call_us + sum(
        model.ops[op.kind].per_op_us + model.ops[op.kind].us_per_mflop
        * padded_flops(op, model.channel_block) / 1e6 + model.ops[op.kind].us_per_kb
        * op.bytes / 1e3 for op in ops)
    assert model.predict_ms(ops) == pytest.approx(by_kind / 1e3)

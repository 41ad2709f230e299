"""Device profiles: built-ins carry sources, YAML round-trips, every error is one clear line."""

import pytest

from edgedistill.design.latency import LatencyModel, OpCost
from edgedistill.design.profiles import (
    BUILTIN,
    DeviceProfile,
    load_profile,
    save_profile,
    with_overrides,
)
from edgedistill.design.trace import Op
from edgedistill.errors import UsageError


def test_builtins_state_sources_and_budgets():
    assert {"rpi4", "jetson-nano", "mcu"} <= set(BUILTIN)
    for profile in BUILTIN.values():
        assert "Published" in profile.source and "Assumed" in profile.source
        assert profile.budgets() and profile.can_predict_latency
    assert BUILTIN["mcu"].precision == "int8" and BUILTIN["mcu"].activation_bytes


def test_units_in_yaml_and_round_trip(tmp_path):
    path = tmp_path / "board.yaml"
    path.write_text("storage_bytes: 2MB\nmax_time_ms: 15ms\nflops_per_s: 5GFLOPS\n"
                    "activation_bytes: 256KiB\nprecision: int8\nthreads: 2\n")
    profile = load_profile(path)
    assert profile.name == "board" and profile.storage_bytes == 2_000_000
    assert profile.max_time_ms == 15 and profile.flops_per_s == 5e9
    assert profile.activation_bytes == 262_144
    model = LatencyModel(call_us=10, ops={"conv": OpCost(per_op_us=2, us_per_mflop=10)},
                         channel_block=8)
    measured = profile.model_copy(update={"latency_model": model})
    again = load_profile(save_profile(measured, tmp_path / "out.yaml"))
    assert again == measured
    assert (tmp_path / "out.yaml").read_text().startswith("# device profile 'board'")


def test_prediction_uses_latency_model_else_flops():
    ops = [Op("conv", 2_000_000, 1000, 16, 16)]
    flops = DeviceProfile(flops_per_s=1e9, overhead_ms=0.5, max_time_ms=10)
    assert flops.predict_ms(ops) == pytest.approx(2.5)
    model = LatencyModel(call_us=100, ops={"conv": OpCost(per_op_us=50, us_per_mflop=100)})
    measured = flops.model_copy(update={"latency_model": model})
    assert measured.predict_ms(ops) == pytest.approx((100 + 50 + 200) / 1e3)
    with pytest.raises(UsageError, match="no cost for 'dwconv'"):
        measured.predict_ms([Op("dwconv", 10, 10)])


@pytest.mark.parametrize("text,needle", [
    ("storage_bytes: 2Mb\n", "storage_bytes: Value error, '2Mb' is in bits"),
    ("max_time_ms: 10ms\n", "needs flops_per_s or a latency_model"),
    ("storage_byte: 1MB\n", "unknown key 'storage_byte'; allowed keys here: activation_bytes"),
    ("precision: int4\n", "precision"),
    ("- a\n- b\n", "mapping"),
    ("storage_bytes: [1\n", "not valid YAML"),
])
def test_yaml_errors(tmp_path, text, needle):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=needle.replace("[", r"\[")):
        load_profile(path)


def test_unknown_profile_lists_builtins():
    with pytest.raises(UsageError, match="rpi4, jetson-nano, mcu"):
        load_profile("no-such-device")


def test_overrides_take_units_and_keep_unset_values():
    p = with_overrides(BUILTIN["rpi4"], storage_bytes="2MB", max_time_ms=None)
    assert p.storage_bytes == 2_000_000 and p.max_time_ms == BUILTIN["rpi4"].max_time_ms
    with pytest.raises(UsageError, match="flops_per_s"):
        with_overrides(BUILTIN["rpi4"], flops_per_s="fast")


def test_shipped_profile_yamls_load():
    from tests.conftest import ROOT

    paths = sorted((ROOT / "configs" / "devices").glob("*.yaml"))
    assert paths
    for path in paths:
        assert load_profile(path).budgets() or load_profile(path).latency_model

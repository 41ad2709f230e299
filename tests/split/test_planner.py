"""Plan arithmetic against hand-computed values, profiles, and the token bucket."""

from __future__ import annotations

import pytest

from edgedistill.errors import UsageError
from edgedistill.split.planner import ComputeProfile, Option, load_profile, plan
from edgedistill.split.shaper import Link, TokenBucket

OPTIONS = [
    Option("teacher on device", 0.90, device_ms=40.0),
    Option("local small", 0.80, device_ms=5.0),
    Option("send jpeg95", 0.90, device_ms=1.0, server_ms=4.0, up_bytes=1250, down_bytes=250,
           remote=True),
    Option("split c2", 0.895, device_ms=2.0, server_ms=3.0, up_bytes=375, down_bytes=250,
           remote=True),
]


def test_latencies_match_hand_computed_values():
    rows = plan(OPTIONS, [10.0, 1.0, 0.1], reference_acc=0.90, tolerance=0.01, rtt_ms=10.0,
                rpc_overhead_ms=2.0)
    assert [r["mbit"] for r in rows] == [0.1, 1.0, 10.0]
    at = {r["mbit"]: r for r in rows}
    # send jpeg95 at 1 Mbit/s: 1 + 10 + 2 + 8 * 1500 / 1000 + 4 = 29
    assert at[1.0]["latency_ms"]["send jpeg95"] == pytest.approx(29.0)
    # split c2 at 1 Mbit/s: 2 + 10 + 2 + 8 * 625 / 1000 + 3 = 22
    assert at[1.0]["latency_ms"]["split c2"] == pytest.approx(22.0)
    # at 0.1 Mbit/s: split 2 + 12 + 50 + 3 = 67, jpeg 1 + 12 + 120 + 4 = 137
    assert at[0.1]["latency_ms"]["split c2"] == pytest.approx(67.0)
    assert at[0.1]["latency_ms"]["send jpeg95"] == pytest.approx(137.0)
    # at 10 Mbit/s: split 17.5, jpeg 18.2
    assert at[10.0]["latency_ms"]["split c2"] == pytest.approx(17.5)
    assert at[10.0]["latency_ms"]["send jpeg95"] == pytest.approx(18.2)
    assert all(r["latency_ms"]["teacher on device"] == 40.0 for r in rows)
    # the local model is fastest but 10 points worse: not eligible
    assert [r["best"] for r in rows] == ["teacher on device", "split c2", "split c2"]


def test_tolerance_decides_eligibility():
    rows = plan(OPTIONS, [1.0], 0.90, tolerance=0.10)
    assert rows[0]["best"] == "local small"
    rows = plan(OPTIONS, [1.0], 0.90, tolerance=0.0)
    assert rows[0]["best"] == "send jpeg95"  # 1 + 12 + 4 = 17 < 40
    assert plan(OPTIONS, [1.0], 0.99, tolerance=0.0)[0]["best"] is None


def test_plan_refuses_bad_input():
    with pytest.raises(UsageError, match="positive"):
        plan(OPTIONS, [0.0], 0.9, 0.01)
    with pytest.raises(UsageError, match="no options"):
        plan([], [1.0], 0.9, 0.01)


def test_profiles_scale_or_use_flops(tmp_path):
    assert ComputeProfile(slowdown=4, overhead_ms=1).model_ms(2.5) == 11.0
    assert ComputeProfile(slowdown=4).work_ms(2.5) == 10.0
    gpu = ComputeProfile(gflops=10, overhead_ms=0.5)
    assert gpu.model_ms(99.0, flops=2e9) == pytest.approx(200.5)
    assert gpu.model_ms(3.0) == 3.5
    path = tmp_path / "phone.yaml"
    path.write_text("slowdown: 8\noverhead_ms: 0.2\n")
    assert load_profile(str(path)) == ComputeProfile(name="phone", slowdown=8, overhead_ms=0.2)
    assert load_profile("host").slowdown == 1
    path.write_text("slowdwn: 8\n")
    with pytest.raises(UsageError, match="unknown key 'slowdwn'"):
        load_profile(str(path))
    with pytest.raises(UsageError, match="neither built in"):
        load_profile("mars")


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.slept = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_token_bucket_paces_to_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(1000.0, burst_bytes=200, clock=clock, sleep=clock.sleep)
    assert bucket.consume(150) == 0.0
    assert bucket.consume(550) == pytest.approx(0.5)
    assert clock.now == pytest.approx(0.5)
    clock.now += 2.0
    assert bucket.consume(200) == 0.0
    assert bucket.consume(100) == pytest.approx(0.1)
    assert bucket.reserve(1000) == pytest.approx(1.0) and clock.now == pytest.approx(2.6)


def test_link_takes_bytes_over_rate_plus_delay():
    clock = FakeClock()
    link = Link(mbit=0.08, delay_ms=30, sleep=clock.sleep)  # 10,000 bytes/s
    for bucket in (link.up, link.down):
        bucket.clock = clock
        bucket.stamp = clock.now
    body = b"x" * 4000
    assert b"".join(link.upload(300, body)) == body
    link.download(700)
    assert clock.now == pytest.approx(0.03 + 0.43 + 0.07 + 0.03)
    with pytest.raises(UsageError):
        Link(0)

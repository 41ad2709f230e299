"""Plan arithmetic against hand-computed values, profiles, and the token bucket."""

from __future__ import annotations

import numpy as np
import pytest

from edgedistill.errors import UsageError
from edgedistill.split.measure import (
    calibrate_overhead_ms,
    interleaved_ms,
    request_overhead_ms,
)
from edgedistill.split.planner import (
    ComputeProfile,
    Option,
    breakdown,
    load_profile,
    options_json,
    plan,
    plan_markdown,
    split_vs_local,
)
from edgedistill.split.shaper import SPIN_S, Link, TokenBucket, precise_sleep

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


def test_breakdown_shows_the_request_overhead_as_its_own_term():
    jpeg, split, teacher = OPTIONS[2], OPTIONS[3], OPTIONS[0]
    # split c2: 8 * (375 + 250) / 1000 = 5 ms at 1 Mbit/s
    assert breakdown(split, rtt_ms=10.0, rpc_overhead_ms=2.5) == {
        "device_ms": 2.0, "rtt_ms": 10.0, "overhead_ms": 2.5, "transfer_ms_at_1mbit": 5.0,
        "server_ms": 3.0}
    # local options cross no network: no rtt, no request overhead
    assert breakdown(teacher, 10.0, 2.5) == {
        "device_ms": 40.0, "rtt_ms": 0.0, "overhead_ms": 0.0, "transfer_ms_at_1mbit": 0.0,
        "server_ms": 0.0}
    rows = plan(OPTIONS, [0.5, 4.0], 0.90, 0.01, rtt_ms=10.0, rpc_overhead_ms=2.5)
    for row in rows:
        for o in (jpeg, split, teacher):
            b = breakdown(o, 10.0, 2.5)
            terms = (b["device_ms"] + b["rtt_ms"] + b["overhead_ms"] + b["server_ms"]
                     + b["transfer_ms_at_1mbit"] / row["mbit"])
            assert row["latency_ms"][o.name] == pytest.approx(terms)
    # by hand: split at 0.5 Mbit/s 2 + 10 + 2.5 + 10 + 3 = 27.5; jpeg at 4: 1 + 10 + 2.5 + 3 + 4
    assert rows[0]["latency_ms"]["split c2"] == pytest.approx(27.5)
    assert rows[1]["latency_ms"]["send jpeg95"] == pytest.approx(20.5)
    md = plan_markdown(OPTIONS, rows, 0.90, 0.01, {"rtt_ms": 10.0}, 10.0, 2.5)
    assert "request overhead ms" in md
    assert "| split c2 | 0.8950 | 375 | 250 | 2.000 | 10.000 | 2.500 | 5.000 | 3.000 |" in md
    assert "| teacher on device | 0.9000 | 0 | 0 | 40.000 | 0.000 | 0.000 | 0.000 | 0.000 |" in md
    assert options_json(OPTIONS, 10.0, 2.5)[3]["breakdown"]["overhead_ms"] == 2.5


class FakeClient:
    """Answers like ``SplitClient`` with fixed timings: split requests cost 3 ms beyond
    head 1 + encode 0.5 + tail 1.5 (total 6), classify requests 4 ms (total 7.5)."""

    def __init__(self):
        self.calls = []

    def infer(self, images):
        self.calls.append("split")
        n = sum(c == "split" for c in self.calls)
        return {"timing_ms": {"head": 1.0, "encode": 0.5, "network": 2.9, "queue": 0.1,
                              "tail": 1.5, "total": 6.0 + (n % 2) * 0.2}}

    def classify(self, image, fmt):
        assert fmt == "png"
        self.calls.append("classify")
        return {"timing_ms": {"head": 0.0, "encode": 2.0, "network": 3.8, "queue": 0.2,
                              "tail": 1.5, "total": 7.5}}


def test_request_overhead_is_total_minus_device_and_server_compute():
    t = {"head": 1.0, "encode": 0.5, "network": 2.9, "queue": 0.1, "tail": 1.5, "total": 6.0}
    assert request_overhead_ms(t) == pytest.approx(3.0)  # network + queue
    client = FakeClient()
    got = calibrate_overhead_ms(client, np.zeros((3, 1, 4, 4), np.uint8), repeats=4, gap_s=0,
                                warmup=3)
    # 3 warm-up rounds, then 4 rounds alternating split, classify
    assert client.calls == ["split", "classify"] * 7
    fresh = FakeClient()
    calibrate_overhead_ms(fresh, np.zeros((3, 1, 4, 4), np.uint8), repeats=1, gap_s=0)
    assert len(fresh.calls) == 2 * (20 + 1)  # by default 20 warm-up rounds
    # split overheads 3.0, 3.2, 3.0, 3.2 (median 3.1); classify 4.0 each;
    # all eight: 3.0 3.0 3.2 3.2 4 4 4 4 -> median 3.6
    assert got == pytest.approx({"overhead_ms": 3.6, "split_ms": 3.1, "classify_ms": 4.0,
                                 "requests": 8})


def test_steps_are_timed_round_robin_over_their_inputs():
    import time

    calls = []
    steps = {"a": (lambda v: calls.append(("a", v)), [(1,), (2,)]),
             "slow": (lambda v: (calls.append(("slow", v)), time.sleep(0.003)), [(9,)])}
    wall, cpu = interleaved_ms(steps, repeats=3, warmup=1, gap_s=0)
    assert calls == [("a", 1), ("slow", 9)] + [("a", 1), ("slow", 9), ("a", 2), ("slow", 9),
                                               ("a", 1), ("slow", 9)]
    assert set(wall) == set(cpu) == {"a", "slow"}
    assert wall["a"] < 1.0 < 3.0 <= wall["slow"] < 50.0
    assert cpu["slow"] < 1.0  # sleeping is not work: CPU time leaves it out


def test_precise_sleep_ends_at_the_deadline_not_a_wake_up_late():
    clock = FakeClock()
    late = []

    def oversleeping(s):  # the OS wakes us 0.2 ms late
        late.append(s)
        clock.now += s + 0.0002

    def ticking():  # every read of the clock takes 1 us
        clock.now += 1e-6
        return clock.now

    precise_sleep(0.010, clock=ticking, sleep=oversleeping)
    assert late == [pytest.approx(0.010 - SPIN_S)]
    assert 0.010 <= clock.now <= 0.010 + 3e-6
    late.clear()
    precise_sleep(SPIN_S / 2, clock=ticking, sleep=oversleeping)  # short waits only spin
    assert late == []
    precise_sleep(0.0, clock=ticking, sleep=oversleeping)
    precise_sleep(-1.0, clock=ticking, sleep=oversleeping)
    assert late == []


def test_precise_sleep_on_the_real_clock_is_not_late():
    import statistics
    import time

    over = []
    for _ in range(10):
        tic = time.perf_counter()
        precise_sleep(0.002)
        over.append(time.perf_counter() - tic - 0.002)
    assert min(over) >= 0
    assert statistics.median(over) < 1e-4, over


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


LOCAL = [
    Option("teacher on device", 0.92, device_ms=60.0, kind="teacher"),
    Option("local mobilenetv2", 0.89, device_ms=12.0, kind="local"),
    Option("local designed", 0.85, device_ms=4.0, kind="local"),
    Option("send jpeg95", 0.92, device_ms=1.0, server_ms=3.0, up_bytes=2500, down_bytes=250,
           remote=True, kind="input"),
    Option("split c1", 0.86, device_ms=2.0, server_ms=2.0, up_bytes=100, down_bytes=250,
           remote=True),
    Option("split e8", 0.91, device_ms=3.0, server_ms=2.0, up_bytes=50, down_bytes=250,
           remote=True),
]


def test_local_models_against_splits_by_hand():
    rows = plan(LOCAL, [0.1, 1.0, 10.0], reference_acc=0.92, tolerance=0.035, rtt_ms=4.0,
                rpc_overhead_ms=1.0)
    at = {r["mbit"]: r["latency_ms"] for r in rows}
    # split e8 at 1 Mbit/s: 3 + 4 + 1 + 8 * 300 / 1000 + 2 = 12.4; c1: 2 + 5 + 2.8 + 2 = 11.8
    assert at[1.0]["split e8"] == pytest.approx(12.4)
    assert at[1.0]["split c1"] == pytest.approx(11.8)
    # at 0.1 Mbit/s: e8 3 + 5 + 24 + 2 = 34; c1 2 + 5 + 28 + 2 = 37; jpeg 1 + 5 + 220 + 3
    assert at[0.1]["split e8"] == pytest.approx(34.0)
    assert at[0.1]["send jpeg95"] == pytest.approx(229.0)
    assert at[10.0]["split e8"] == pytest.approx(10.24)
    # local models cost their device time at every bandwidth
    assert {r["latency_ms"]["local mobilenetv2"] for r in rows} == {12.0}
    # eligible (>= 0.885): teacher, mobilenetv2, jpeg, e8; mobilenetv2 (12 ms) beats e8
    # at 0.1 (34) and 1 Mbit/s (12.4); e8 wins at 10 (10.24)
    assert [r["best"] for r in rows] == ["local mobilenetv2", "local mobilenetv2", "split e8"]
    cmp = {c["local"]: c for c in split_vs_local(LOCAL, rows)}
    # against mobilenetv2 (0.89) only e8 (0.91) counts: faster at 10 Mbit/s (10.24 < 12)
    assert cmp["local mobilenetv2"]["wins_at_mbit"] == [10.0]
    assert [p["split"] for p in cmp["local mobilenetv2"]["points"]] == ["split e8"] * 3
    # against the designed one (0.85, 4 ms) both splits count, and none is under 4 ms
    assert cmp["local designed"]["wins_at_mbit"] == []
    # at 10 Mbit/s the fastest of them is c1: 2 + 4 + 1 + 8 * 350 / 10000 + 2 = 9.28
    assert cmp["local designed"]["points"][2]["split"] == "split c1"
    assert cmp["local designed"]["points"][2]["split_ms"] == pytest.approx(9.28)
    text = plan_markdown(LOCAL, rows, 0.92, 0.035, {"device": "x"})
    assert "than it at Mbit/s: 10." in text and "than it at Mbit/s: none." in text


def test_option_kind_is_checked():
    with pytest.raises(UsageError, match="kind 'phone'"):
        Option("x", 0.9, 1.0, kind="phone")

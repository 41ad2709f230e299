"""The device emulation of ``SplitClient``: k times the CPU time of a step, not its wall
time, so time this thread waits for the CPU (or sleeps) is not multiplied by k."""

from __future__ import annotations

import time

import pytest

from edgedistill.split.client import SplitClient


def busy(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@pytest.fixture
def client(split_run):
    with SplitClient(split_run, "http://127.0.0.1:9", "t" * 43, device_slowdown=10) as c:
        yield c


def test_emulated_step_lasts_k_times_its_cpu_time(client):
    tic, cpu = time.perf_counter(), time.thread_time()
    busy(0.002)
    device = client._device_ms(tic, cpu)
    wall = (time.perf_counter() - tic) * 1e3
    assert device == pytest.approx(20.0, abs=1.0)
    assert device <= wall < device + 50  # waited out (a loaded host may wake it late)


def test_time_off_the_cpu_is_not_multiplied(client):
    tic, cpu = time.perf_counter(), time.thread_time()
    busy(0.002)
    time.sleep(0.005)  # as if another process held the core for 5 ms
    device = client._device_ms(tic, cpu)
    wall = (time.perf_counter() - tic) * 1e3
    assert device == pytest.approx(20.0, abs=1.5)  # not (2 + 5) * 10 = 70
    assert device <= wall < device + 50


def test_a_real_device_reports_wall_time(split_run):
    with SplitClient(split_run, "http://127.0.0.1:9", "t" * 43) as real:
        tic, cpu = time.perf_counter(), time.thread_time()
        time.sleep(0.005)
        assert 5.0 <= real._device_ms(tic, cpu) < 100.0  # wall: the sleep counts

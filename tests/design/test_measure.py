"""The timer: pinned to the cores it was asked for, round-robin rounds, each round's
fastest call, the lower quartile of the rounds."""

import os

import pytest

from edgedistill.design.measure import graph_session, latency_ms, pinned, time_interleaved
from edgedistill.design.microbench import conv_graph


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_pinned_restricts_then_restores_the_cores():
    before = os.sched_getaffinity(0)
    with pinned(1):
        inside = os.sched_getaffinity(0)
        assert len(inside) == 1 and inside <= before
    assert os.sched_getaffinity(0) == before


def test_rounds_keep_each_fastest_call():
    calls = [graph_session(conv_graph(1, c, c, 8, 3, 1, False, 1)[0].SerializeToString(), 1)
             for c in (4, 64)]
    times = time_interleaved(calls, rounds=3, repeats=2)
    assert [len(t) for t in times] == [3, 3] and all(x > 0 for t in times for x in t)
    assert latency_ms([5.0, 1.0, 2.0, 3.0, 100.0]) == 2.0  # one slow round does not count

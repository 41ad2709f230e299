"""A quick latency model of this machine, measured once per session (about 5 s)."""

import pytest


@pytest.fixture(scope="session")
def quick_latency_model():
    from edgedistill.design.latency import profile_latency

    return profile_latency(threads=1, batch=1, quick=True, rounds=1)

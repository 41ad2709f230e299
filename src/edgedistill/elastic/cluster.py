"""Reaching Ray: embedded by default, a running cluster with ``address``, and the
resource checks that turn "this replica can never be placed" into an error instead
of a wait that never ends.

Ray's own client retries an unreachable address for many minutes without a word, so
``host:port`` addresses are probed with a plain TCP connect first.
"""

from __future__ import annotations

import logging
import os
import socket

import torch

from edgedistill.elastic.spec import ReplicaSpec
from edgedistill.errors import UsageError

HOW_TO_START = ("start one with `ray start --head --port 6379` (and `ray start --address "
                "HEAD:6379` on each other machine), or leave teacher.pool.address empty to "
                "run Ray embedded in this process")


def _probe(address: str, timeout_s: float = 3.0) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"teacher.pool.address {address!r} is not HOST:PORT, 'auto' or "
                         f"ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as err:
        raise UsageError(f"cannot reach Ray at {address} ({err.strerror or err}); "
                         f"{HOW_TO_START}") from None


def connect(address: str | None) -> bool:
    """Make sure this process talks to Ray; True when this call connected (so the caller
    disconnects when done), False when Ray was already initialized by someone else.

    Embedded Ray gets the cores the student does not use, so replicas and the student
    do not fight over the same threads.
    """
    import ray

    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        cpus = max(1, (os.cpu_count() or 1) - torch.get_num_threads())
        ray.init(num_cpus=cpus, include_dashboard=False, **quiet)
        return True
    if address != "auto" and not address.startswith("ray://"):
        _probe(address)
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"cannot connect to Ray at {address}: {first}; {HOW_TO_START}") from None
    return True


def node_totals() -> list[dict[str, float]]:
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def fits(demand: dict[str, float], resources: dict[str, float]) -> bool:
    return all(resources.get(k, 0.0) + 1e-9 >= v for k, v in demand.items())


def check_placeable(spec: ReplicaSpec) -> None:
    """Fail now if no live node could ever host ``spec`` (e.g. a GPU on a CPU cluster)."""
    totals = node_totals()
    if any(fits(spec.demand(), t) for t in totals):
        return
    largest = max(totals, key=lambda t: t.get("CPU", 0.0), default={})
    shown = {k: v for k, v in largest.items() if k in ("CPU", "GPU") or k in spec.resources}
    raise UsageError(f"teacher replica {spec.describe()} needs {spec.demand()} but no Ray node "
                     f"has that much (largest node: {shown}); lower teacher.pool.replicas "
                     "num_cpus/num_gpus, or add a node with `ray start --address HEAD:PORT`")


def can_place_now(spec: ReplicaSpec) -> bool:
    """Whether the cluster has the resources for one more replica free right now."""
    import ray

    return fits(spec.demand(), ray.available_resources())

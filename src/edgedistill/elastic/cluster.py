"""Reaching Ray: embedded by default, a running cluster with ``address``, and the
resource checks that turn "this replica can never be placed" into an error instead
of a wait that never ends.

Ray's own client retries an unreachable address for many minutes without a word, so
``host:port`` addresses are probed with a plain TCP connect first. A cluster that
rejects the connection for lack of a token (Ray enables token authentication by
default) gets an error that says how to provide one.
"""

from __future__ import annotations

import logging
import os
import socket

import torch

from edgedistill.elastic.reaper import Reaper
from edgedistill.elastic.spec import ReplicaSpec
from edgedistill.errors import UsageError

TOKEN_HELP = ("clusters started with `ray start` require token authentication, and Ray sends "
              "a token to an explicit address only when told to: run edgedistill with "
              "RAY_AUTH_MODE=token in its environment and the cluster's token in "
              "~/.ray/auth_token (copy it from the head node) or in RAY_AUTH_TOKEN")
HOW_TO_START = ("start one with `ray start --head --port 6379` (and `ray start --address "
                "HEAD:6379` on each other machine), or leave teacher.pool.address empty to "
                "run Ray embedded in this process")
_reaper: Reaper | None = None  # the watchdog of the Ray this process embeds, if any


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
    do not fight over the same threads. It is always a new, private instance
    (``address="local"``): a bare ``ray.init()`` would join whatever cluster ``ray start``
    last left on this machine, even a dead one. ``address: auto`` joins that one. Its
    processes die with this one whatever ends it (``reaper``); ``disconnect`` shuts it down.
    """
    global _reaper
    import ray

    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        cpus = max(1, (os.cpu_count() or 1) - torch.get_num_threads())
        _reaper = Reaper()
        try:
            with _reaper.marking():
                ctx = ray.init(address="local", num_cpus=cpus, include_dashboard=False,
                               **quiet)
            _reaper.watch_folder(ctx.address_info["session_dir"])
        except BaseException:
            disconnect()
            raise
        return True
    if address != "auto" and not address.startswith("ray://"):
        _probe(address)
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as err:
        if _auth_failed(err):
            raise UsageError(f"the Ray cluster at {address} refused this process's token: "
                             f"{TOKEN_HELP}") from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"cannot connect to Ray at {address}: {first}; {HOW_TO_START}") from None
    return True


def disconnect() -> None:
    """Shut down what ``connect`` started; an embedded Ray's leftovers are killed."""
    global _reaper
    import ray

    if ray.is_initialized():
        ray.shutdown()
    if _reaper is not None:
        _reaper.close()
        _reaper = None


def _auth_failed(err: BaseException | None) -> bool:
    while err is not None:
        if "InvalidAuthToken" in str(err) or type(err).__name__ == "AuthenticationError":
            return True
        err = err.__cause__ or err.__context__
    return False


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


def check_total(specs: list[ReplicaSpec]) -> None:
    """Fail now if the replicas asked for at the start need more than the whole cluster
    has, instead of waiting for resources that will never be free."""
    need: dict[str, float] = {}
    for spec in specs:
        for key, value in spec.demand().items():
            need[key] = need.get(key, 0.0) + value
    have: dict[str, float] = {}
    for node in node_totals():
        for key, value in node.items():
            have[key] = have.get(key, 0.0) + value
    if fits(need, have):
        return
    short = {k: f"{v:g} needed, {have.get(k, 0.0):g} in the cluster" for k, v in need.items()
             if have.get(k, 0.0) + 1e-9 < v}
    raise UsageError(f"teacher.pool.replicas ask for more than the Ray cluster has ({short}); "
                     "ask for fewer or smaller replicas (num_cpus may be fractional), add "
                     "nodes, or give the student fewer threads (embedded Ray gets the cores "
                     "train.threads leaves free)")


def can_place_now(spec: ReplicaSpec) -> bool:
    """Whether the cluster has the resources for one more replica free right now."""
    import ray

    return fits(spec.demand(), ray.available_resources())


def free_resources() -> dict[str, float]:
    """Free CPUs, GPUs and custom resources (not memory or node markers), for messages."""
    import ray

    return {k: v for k, v in ray.available_resources().items()
            if not k.startswith(("node:", "memory", "object_store_memory"))}

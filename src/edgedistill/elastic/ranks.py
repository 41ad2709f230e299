"""One teacher pool for all the ranks of a data-parallel job.

N ranks must not start N pools. Rank 0 starts the configured pool (on an embedded Ray,
or on ``teacher.pool.address``) as a teacher service private to this job, the same
``TeacherService`` that ``edgedistill teachers serve`` runs, and tells the other ranks
where it is; every rank, rank 0 included, then attaches as a student of its own (its
own ``ServiceClient``, its own queue and exactly-once ledger, requests keyed by
(epoch, step, rank)). The service routes fairly between the ranks, replaces dead
replicas and autoscales on their waits. Rank 0 stops it when the job ends; if rank 0 is
killed, an embedded Ray dies with it (``reaper``), taking the service along.
"""

from __future__ import annotations

import os

from edgedistill.elastic import cluster
from edgedistill.elastic.attach import ServiceClient
from edgedistill.errors import UsageError
from edgedistill.train.distributed import broadcast, world

CALIBRATION_IMAGES = 256


def service_name() -> str:
    return f"ddp-{os.environ.get('TORCHELASTIC_RUN_ID', str(os.getppid()))}"


class RankClient(ServiceClient):
    """A rank's end of the job's shared pool; on rank 0, ``close`` also stops the pool."""

    stops = False
    owns_root = False

    def close(self) -> None:
        super().close()
        if self.stops:
            from edgedistill.elastic.service import stop_service

            self.stops = False
            try:
                stop_service(self.name)
            except UsageError:
                pass  # already gone
        if self.owns_root:
            cluster.disconnect()
            self.owns_root = False


def shared_pool(source: str, cfg, layers: list[str], plan, log=print) -> RankClient:
    """Start (rank 0) or find (the others) the job's pool and attach this rank to it."""
    # Ray asks every driver of a cluster for its token (~/.ray/auth_token, RAY_AUTH_TOKEN)
    # and sends it only in token mode, which it reads when first imported
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    from edgedistill.elastic.service import start_service

    w = world()
    name = service_name()
    found: tuple[str | None, str | None] = (None, None)
    owns = False
    if w.main:
        try:
            owns = cluster.connect(cfg.address)
            start_service(name, source, cfg.model_dump(), layers, plan.inputs,
                          plan.calibration(CALIBRATION_IMAGES))
            found = (ray.get_runtime_context().gcs_address, None)
        except Exception as err:  # every rank must hear why, not wait forever
            found = (None, str(err) if isinstance(err, UsageError) else repr(err))
            if owns:
                cluster.disconnect()
    address, problem = broadcast(found)
    if problem is not None:
        raise UsageError(f"the job's teacher pool did not start on rank 0: {problem}")
    client = RankClient(name, None if w.main else address, source, layers, plan.inputs,
                        log=log)
    client.stops, client.owns_root = w.main, owns
    return client

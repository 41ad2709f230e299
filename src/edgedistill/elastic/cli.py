"""``edgedistill teachers ...``: start, inspect and stop a teacher service on a Ray cluster.

``serve`` reads a distill config: its ``teacher`` section says what to serve and with
which replicas, its ``data`` section how replicas rebuild the students' inputs, its
losses which teacher layers to hook. Students with that config and ``--set
teacher.pool.service=NAME`` attach to it. The service is detached: ``serve`` returns
once the replicas answer, and the service runs until ``teachers stop``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgedistill.errors import SET_HELP

teachers_app = typer.Typer(add_completion=False, no_args_is_help=True,
                           help="A long-lived teacher pool that several students share (Ray).")
ADDRESS_HELP = "Ray cluster: HOST:PORT, ray://HOST:PORT or auto (the one `ray start` left here)."


def serve_config(cfg, name: str, student_timeout_s: float = 30.0,
                 timeout_s: float = 300.0) -> dict:
    """Start service ``name`` for the teacher, data and layers of distill config ``cfg``
    (Ray must be connected)."""
    import torch

    from edgedistill import api
    from edgedistill.distill.run import check_teacher_fits
    from edgedistill.elastic.plan import BatchPlan
    from edgedistill.elastic.service import start_service
    from edgedistill.elastic.source import CALIBRATION_IMAGES
    from edgedistill.models import resolve_layer_aliases

    teacher = api.load_model(cfg.teacher.source)
    train_data, _, test_data = api.build_splits(cfg.data, cfg.seed)
    check_teacher_fits(teacher, train_data, cfg.teacher.source)
    pipe, _ = api.build_pipelines(cfg.data, train_data, test_data, cfg.seed, torch.device("cpu"))
    plan = BatchPlan(pipe)
    layers = list(dict.fromkeys(p for loss in cfg.losses
                                for p in resolve_layer_aliases(teacher, loss.teacher_layers)))
    return start_service(name, cfg.teacher.source, cfg.teacher.pool.model_dump(), layers,
                         plan.inputs, plan.calibration(CALIBRATION_IMAGES),
                         student_timeout_s=student_timeout_s, timeout_s=timeout_s)


def _connected(address: Optional[str], body):
    from edgedistill.elastic import cluster

    if address is None:
        address = "auto"
    owns = cluster.connect(address)
    try:
        return body()
    finally:
        if owns:
            cluster.disconnect()


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def print_status(info: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    console.print(f"teacher service [bold]{info['name']}[/bold]: {info['source']} (weights "
                  f"{info['hash']}), layers {info['layers'] or 'none'}, "
                  f"{info['restarts']} replica restart(s)")
    replicas = Table(title="replicas")
    for col in ("id", "state", "backend", "node", "load", "answers/s", "answered", "ms/batch"):
        replicas.add_column(col)
    for r in info["replicas"]:
        ms = "-" if r["service_ms"] is None else f"{r['service_ms']:.1f}"
        replicas.add_row(str(r["id"]), r["state"], r["kind"], r["node"], _pct(r["load"]),
                         f"{r['answers_per_s']:.1f}", str(r["served"]), ms)
    console.print(replicas)
    students = Table(title="students")
    for col in ("student", "attached", "queued", "in flight", "answered", "re-sent", "wait"):
        students.add_column(col)
    for s in info["students"]:
        students.add_row(s["id"], f"{s['attached_s']:.0f} s", str(s["queued"]),
                         str(s["in_flight"]), str(s["answered"]), str(s["resent"]),
                         _pct(s["wait_fraction"]))
    console.print(students if info["students"] else "no student attached")


@teachers_app.command()
def serve(config: Path, name: str = typer.Option(..., help="Service name students attach to."),
          address: Optional[str] = typer.Option(None, help=ADDRESS_HELP),
          set_: list[str] = typer.Option([], "--set", help=SET_HELP),
          student_timeout: float = typer.Option(
              30.0, min=1, help="Seconds of silence after which a student counts as gone.")):
    """Start a named teacher pool that outlives any student; returns once it answers."""
    from edgedistill.config import DistillExperiment, load_config
    from edgedistill.elastic.service import find_service

    cfg = load_config(config, DistillExperiment, set_)

    def body():
        import ray

        serve_config(cfg, name, student_timeout)
        print_status(ray.get(find_service(name).status.remote()))

    _connected(address or cfg.teacher.pool.address, body)


@teachers_app.command()
def status(name: Optional[str] = typer.Argument(None, help="One service (default: all)."),
           address: Optional[str] = typer.Option(None, help=ADDRESS_HELP)):
    """Replicas (backend, node, load, answers/s) and attached students of each service."""
    from edgedistill.elastic.service import find_service, running_services

    def body():
        import ray

        names = [name] if name else running_services()
        if not names:
            print("no teacher service runs on this Ray cluster")
        for each in names:
            print_status(ray.get(find_service(each).status.remote(), timeout=30))

    _connected(address, body)


@teachers_app.command()
def scale(name: str, replicas: int = typer.Argument(..., help="How many replicas to keep."),
          address: Optional[str] = typer.Option(None, help=ADDRESS_HELP)):
    """Grow or shrink a service to N replicas while students train: the slowest drain
    (their batches are answered first), new ones start where Ray finds room."""
    from edgedistill.elastic.service import scale_service

    def body():
        done = scale_service(name, replicas)
        draining = ", ".join(f"{rid} ({queued} batch(es) to answer)"
                             for rid, queued in done["draining"].items()) or "none"
        print(f"teacher service {name!r} scaled to {replicas} replica(s): started "
              f"{done['added'] or 'none'}, draining {draining}, stopped "
              f"{done['removed'] or 'none'}")

    _connected(address, body)


@teachers_app.command()
def stop(name: str, address: Optional[str] = typer.Option(None, help=ADDRESS_HELP)):
    """Stop a teacher service and its replicas (attached students wait for a new one)."""
    from edgedistill.elastic.service import stop_service

    def body():
        stop_service(name)
        print(f"teacher service {name!r} stopped")

    _connected(address, body)


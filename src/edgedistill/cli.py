"""The ``edgedistill`` command: parse, load config, call the API, print.

Every ``UsageError`` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from edgedistill.errors import SET_HELP, UsageError, run_cli

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Distil large networks into models that run on edge devices.",
)
console = Console()

from edgedistill.design.cli import design_app  # noqa: E402  (loads its exports lazily)

app.add_typer(design_app)

from edgedistill.split.cli import split_app  # noqa: E402

app.add_typer(split_app, name="split", help="Head network distillation and split computing.")

from edgedistill.elastic.cli import teachers_app  # noqa: E402

app.add_typer(teachers_app, name="teachers")

NPROC_HELP = ("Train data-parallel on N ranks on this machine (torch.distributed.run; gloo on "
              "CPU, NCCL on CUDA, one GPU per rank).")


def _table(title: str, columns: list[str], rows: list[list], whole: tuple[int, ...] = (0,)
           ) -> None:
    table = Table(title=title)
    for i, col in enumerate(columns):
        # the first column holds names users type back (zoo:NAME, models): never cut them
        table.add_column(col, no_wrap=i in whole)
    for row in rows:
        table.add_row(*[str(x) for x in row])
    # piped output (no terminal) is not cut to 80 columns either
    (console if console.is_terminal else Console(width=200)).print(table)


def _default_out(name: str) -> Path:
    return Path("runs") / name


def _ranks(nproc: Optional[int], cfg, target: Path, resume: bool, halting_report: bool
           ) -> bool:
    """Start ``nproc`` ranks of this very command (True: done here), or, inside a rank,
    quiet its stdout unless it is rank 0, so a job prints each line once."""
    import os
    import sys

    from edgedistill.train import launch

    if os.environ.get("RANK", "0") != "0":
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the rank)
    if not nproc or nproc == 1:
        return False
    if "LOCAL_RANK" in os.environ:
        raise UsageError("--nproc inside torchrun: torchrun already started the ranks; drop "
                         "--nproc")
    if halting_report:
        raise UsageError("--halting-report runs one process; drop --nproc")
    from edgedistill.api import check_run_dir

    launch.check_before_start(cfg, nproc)
    check_run_dir(target, resume)
    try:
        launch.launch(nproc, launch.without_nproc(sys.argv[1:]), target)
    except launch.RankFailed as err:
        print(f"error: {err}", file=sys.stderr)
        raise typer.Exit(err.status) from None
    return True


def _halting_report(cfg, target: Path, resume: bool) -> None:
    from edgedistill.design.halting_report import run_halting_report

    run_halting_report(cfg, target, resume=resume)
    console.print((Path(target) / "HALTING.md").read_text())


@app.command()
def train(
    config: Path,
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    out: Optional[Path] = typer.Option(None, help="Run directory (default runs/NAME)."),
    resume: bool = typer.Option(False, help="Continue from the run's last checkpoint."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:N"),
    halting_report: bool = typer.Option(
        False,
        "--halting-report",
        help="Run to the full schedule and with halting (same seed); "
        "compare epochs, wall time, FLOPs, accuracy.",
    ),
    nproc: Optional[int] = typer.Option(None, "--nproc", min=1, help=NPROC_HELP),
):
    """Train a model on a dataset (this is how teachers are made)."""
    from edgedistill.config import TrainExperiment, load_config

    overrides = [*set_, *([f"train.device={device}"] if device else [])]
    cfg = load_config(config, TrainExperiment, overrides)  # before torch: mistakes exit fast
    from edgedistill import api

    if _ranks(nproc, cfg, out or _default_out(cfg.name), resume, halting_report):
        return
    if halting_report:
        _halting_report(cfg, out or _default_out(cfg.name), resume)
        return
    summary = api.train(cfg, out or _default_out(cfg.name), resume=resume)
    console.print(
        f"final test accuracy {summary['final_test_acc']:.4f} "
        f"(best {summary['best_test_acc']:.4f}); run dir "
        f"{out or _default_out(cfg.name)}"
    )


@app.command()
def distill(
    config: Path,
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    out: Optional[Path] = typer.Option(None, help="Run directory (default runs/NAME)."),
    resume: bool = typer.Option(False, help="Continue from the run's last checkpoint."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:N"),
    address: Optional[str] = typer.Option(
        None,
        help="Ray cluster for teacher.mode=pool: HOST:PORT or auto "
        "(default: Ray embedded in this process).",
    ),
    halting_report: bool = typer.Option(
        False,
        "--halting-report",
        help="Run to the full schedule and with halting (same seed); "
        "compare epochs, wall time, FLOPs, accuracy.",
    ),
    nproc: Optional[int] = typer.Option(None, "--nproc", min=1, help=NPROC_HELP),
):
    """Distil a student from a teacher with the config's loss terms."""
    from edgedistill.config import DistillExperiment, load_config

    overrides = [
        *set_,
        *([f"train.device={device}"] if device else []),
        *([f"teacher.pool.address={address}"] if address else []),
    ]
    cfg = load_config(config, DistillExperiment, overrides)
    target = out or _default_out(cfg.name)
    if _ranks(nproc, cfg, target, resume, halting_report):
        return
    if halting_report:
        _halting_report(cfg, target, resume)
        return
    from edgedistill.distill.run import run_distill  # after the config: a bad one fails fast

    summary = run_distill(cfg, target, resume=resume)
    console.print(
        f"student {summary['student']}: final test accuracy "
        f"{summary['final_test_acc']:.4f} (teacher {summary['teacher_acc']:.4f}); "
        f"run dir {target}"
    )


@app.command("eval")
def eval_(
    source: str = typer.Argument(..., help="Run dir, checkpoint, weights or zoo:NAME"),
    dataset: Optional[str] = typer.Option(None, help="Default: the run's dataset."),
    limit_test: Optional[int] = typer.Option(None),
):
    """Print accuracy, loss, params, FLOPs and size of a trained model."""
    from edgedistill.report.evaluation import evaluate_source

    result = evaluate_source(source, dataset=dataset, limit_test=limit_test)
    _table(f"eval {source}", ["metric", "value"], [[k, v] for k, v in result.items()])


@app.command()
def models():
    """List the registered model families."""
    from edgedistill.models import MODELS

    _table("models", ["name", "description"], [[n, MODELS.describe(n)] for n in MODELS])


@app.command()
def datasets():
    """List the registered datasets."""
    from edgedistill.data import DATASETS

    _table("datasets", ["name", "description"], [[n, DATASETS.describe(n)] for n in DATASETS])


@app.command()
def losses(
    plugin: list[str] = typer.Option(
        [], "--plugin", help="Also load this plugin: a module (my_pkg.kd_losses) or a .py "
        "file (repeatable); installed edgedistill.plugins entry points always load."),
):
    """List every registered distillation method: built-in and plugins, with their source."""
    from edgedistill.losses import LOSSES
    from edgedistill.plugins import load_plugins, source_of

    load_plugins(plugin)
    LOSSES.load_all()
    _table("losses", ["name", "description", "from"],
           [[n, LOSSES.describe(n), source_of(LOSSES.origin(n))] for n in LOSSES], whole=(0, 2))


@app.command()
def zoo():
    """List the teachers shipped with edgedistill."""
    from edgedistill import pretrained

    rows = [
        [
            name,
            e["model"],
            e["dataset"],
            f"{e['test_acc']:.4f}",
            f"{e['epochs_trained']}/{e['epochs_planned']}",
            e["date"],
        ]
        for name, e in sorted(pretrained.manifest().items())
    ]
    _table(
        "shipped teachers (use as teacher: zoo:NAME)",
        ["name", "model", "dataset", "test acc", "epochs", "date"],
        rows,
    )


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Where runs and the report go."),
    epochs: Optional[int] = typer.Option(None, help="Student epochs (default: the study's 8)."),
    limit_train: Optional[int] = typer.Option(
        None, help="Training images used (default: the study's 10,000)."),
):
    """Shipped teacher -> resnet8 from scratch and with KD; prints a table."""
    from edgedistill.demo import run_demo

    report = run_demo(out, epochs=epochs, limit_train=limit_train)
    console.print(f"report: {report}")


@app.command()
def export(
    run_dir: Path,
    format: str = typer.Option("onnx", help="onnx"),
    int8: bool = typer.Option(False, help="Also write an ONNX Runtime int8 model."),
    limit_test: Optional[int] = typer.Option(None, help="Test images for int8 accuracy."),
):
    """Export a trained model to ONNX, check it against PyTorch, time it."""
    from edgedistill.export.onnx import export_run

    if format != "onnx":
        raise UsageError(f"--format {format!r} is not supported; choose: onnx")
    result = export_run(run_dir, int8=int8, limit_test=limit_test)
    _table(f"export {run_dir}", ["metric", "value"], [[k, v] for k, v in result.items()])


from edgedistill.study.cli import study  # noqa: E402  (the one study command)

app.command()(study)


@app.command("check")
def check_(
    config: Path,
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    kind: Optional[str] = typer.Option(None, help="train, distill, study or split (default: "
                                       "told by the config's keys)"),
):
    """Validate a config, build its teacher and students, print the plan (no training)."""
    from edgedistill.check import check

    for line in check(config, set_, kind):
        print(line)


def main() -> None:
    """Entry point: usage errors (ours and click's) exit 2 with one line."""
    run_cli(app)


if __name__ == "__main__":
    main()

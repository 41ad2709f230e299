"""The ``study`` command, kept beside the study code; ``edgedistill.cli`` mounts it and
``python -m edgedistill.study`` runs it on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgedistill.errors import SET_HELP


def study(config: Path = typer.Argument(..., help="Study YAML (configs/studies/...)."),
          set_: list[str] = typer.Option([], "--set", help=SET_HELP),
          out: Optional[Path] = typer.Option(None, help="Study folder (default runs/NAME)."),
          resume: bool = typer.Option(False, help="Continue a study; finished cells are kept."),
          workers: Optional[int] = typer.Option(None, help="Cells run at once (default: config)."),
          device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:N")):
    """Students x transfer techniques x seeds: accuracy, convergence speed, gain over scratch."""
    from edgedistill.config.study import load_study

    overrides = [*set_, *([f"train.device={device}"] if device else [])]
    load_study(config, overrides)  # checked before torch is imported: mistakes exit fast
    from edgedistill.study.run import run_study

    report = run_study(config, out, resume=resume, overrides=overrides, workers=workers)
    print(f"report: {report}")

"""``python -m edgedistill.study CONFIG [--out DIR] [--resume]``: the study command alone."""

import typer

from edgedistill.errors import run_cli
from edgedistill.study.cli import study

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(study)

if __name__ == "__main__":
    run_cli(app, interrupted="interrupted; rerun with --resume to continue")

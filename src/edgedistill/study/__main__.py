"""``python -m edgedistill.study CONFIG [--out DIR] [--resume]``: the study command alone."""

import sys

import typer

from edgedistill.errors import UsageError
from edgedistill.study.cli import study

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(study)

if __name__ == "__main__":
    try:
        app()
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume to continue", file=sys.stderr)
        sys.exit(130)

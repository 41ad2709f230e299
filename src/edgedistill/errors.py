"""Errors that the CLI turns into one clear line and exit status 2."""


class UsageError(Exception):
    """A problem the user can fix: bad config, missing file, unknown name.

    The message names the offending key or file and, where there is a finite set,
    the allowed values. The CLI prints it without a traceback and exits 2.
    """


class DataMissingError(UsageError):
    """A dataset's files are not where we looked; the message says how to get them."""


class CheckpointError(UsageError):
    """A checkpoint is missing, truncated or was written for another model."""


def run_cli(app, argv: list[str] | None = None, interrupted: str = "interrupted") -> None:
    """Run a typer ``app`` the way every edgedistill command runs: a ``UsageError`` is
    one line on stderr and exit status 2; click's own usage errors (unknown option,
    missing argument) are printed by click, which exits 2; Ctrl-C exits 130 with
    ``interrupted``; no traceback for any of them."""
    import sys

    try:
        app(args=argv)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        sys.exit(130)

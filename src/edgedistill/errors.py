"""Errors that the CLI turns into one clear line and exit status 2."""

import errno

# OSError numbers that mean "this place cannot take the file", each with the fix to name
DISK_PROBLEMS = {
    errno.ENOSPC: "no space left on the device; free some space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded; free some space or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.EACCES: "permission denied; fix its permissions or use another path",
    errno.EPERM: "operation not permitted; fix its permissions or use another path",
}


SET_HELP = "Override a config key, e.g. --set train.epochs=5 (repeatable)."
"""The ``--set`` help every command that reads a config shows (``config.apply_overrides``)."""


class UsageError(Exception):
    """A problem the user can fix: bad config, missing file, unknown name.

    The message names the offending key or file and, where there is a finite set,
    the allowed values. The CLI prints it without a traceback and exits 2.
    """


class DataMissingError(UsageError):
    """A dataset's files are not where we looked; the message says how to get them."""


class CheckpointError(UsageError):
    """A checkpoint is missing, truncated or was written for another model."""


class OutputError(UsageError):
    """A file or folder cannot be written: disk full, read-only, no permission, a file
    where a folder should be. The message names the path."""


def disk_problem(err: OSError) -> str | None:
    """What a full, read-only or forbidden place means for the user, else None."""
    return DISK_PROBLEMS.get(err.errno)


def run_cli(app, argv: list[str] | None = None, interrupted: str = "interrupted") -> None:
    """Run a typer ``app`` the way every edgedistill command runs: a ``UsageError`` is
    one line on stderr and exit status 2; click's own usage errors (unknown option,
    missing argument) are printed by click, which exits 2; Ctrl-C exits 130 with
    ``interrupted``; no traceback for any of them.

    Two errors that only bad input causes are caught here too, in case a place that
    reads or writes a user's file did not name the problem: a binary file read as text,
    and a full, read-only or forbidden disk (its path is in the error).
    """
    import sys

    try:
        app(args=argv)
    except UsageError as err:
        _fail(str(err))
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        sys.exit(130)
    except UnicodeDecodeError as err:
        _fail(f"a file read as text is binary or not UTF-8 ({err.reason} at byte {err.start})")
    except OSError as err:
        if disk_problem(err) is None or err.filename is None:
            raise
        _fail(f"cannot use {err.filename}: {disk_problem(err)}")


def _fail(message: str) -> None:
    import sys

    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)

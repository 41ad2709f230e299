"""Bearer tokens from files, so they never appear on a command line or in ``ps``."""

from __future__ import annotations

import os
import secrets
import stat
import sys
from pathlib import Path

from edgedistill.errors import UsageError

MIN_LENGTH = 16
MAKE_ONE = "make one with: edgedistill split token TOKEN_FILE"


def read_token(path: str | Path) -> str:
    """The token in ``path`` (surrounding whitespace stripped): one word of at least 16
    printable ASCII characters, as an HTTP header can carry it.

    Warns when the file is readable by group or others, as ssh does for keys.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"token file {str(path)!r} does not exist; {MAKE_ONE}")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read token file {path}: {err.strerror}") from None
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise UsageError(f"token file {path} is not text (binary or non-ASCII bytes); "
                         f"{MAKE_ONE}") from None
    if not token:
        raise UsageError(f"token file {path} is empty; {MAKE_ONE}")
    if len(token) < MIN_LENGTH or not all(c.isprintable() and not c.isspace() for c in token):
        raise UsageError(f"token in {path} must be one word of at least {MIN_LENGTH} "
                         f"characters (printable, no spaces); {MAKE_ONE}")
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"warning: token file {path} is accessible by other users; chmod 600 it",
              file=sys.stderr)
    return token


def write_token(path: str | Path, force: bool = False) -> Path:
    """A new random token (``secrets.token_urlsafe(32)``, 256 bits) in ``path``, mode 0600.

    The file is created with ``O_EXCL`` and mode 0600 from its first byte, so no other
    user can read it in between; an existing file is kept unless ``force``, which
    writes a fresh file beside it the same way and renames it over the old one.
    """
    path = Path(path)
    if path.exists() and not force:
        raise UsageError(f"token file {path} exists; pass --force to replace it (clients "
                         "holding the old token will be refused)")
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give a file path")
    if not path.parent.is_dir():
        raise UsageError(f"folder {str(path.parent)!r} does not exist")
    target = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp") if force else path
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"token file {path} exists; pass --force to replace it") from None
    except OSError as err:
        raise UsageError(f"cannot create token file {path}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if target != path:
            os.replace(target, path)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return path

"""Bearer tokens from files, so they never appear on a command line or in ``ps``."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from edgedistill.errors import UsageError

MIN_LENGTH = 16


def read_token(path: str | Path) -> str:
    """The token in ``path`` (surrounding whitespace stripped); at least 16 characters.

    Warns when the file is readable by group or others, as ssh does for keys.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"token file {str(path)!r} does not exist")
    token = path.read_text().strip()
    if len(token) < MIN_LENGTH or any(c.isspace() for c in token):
        raise UsageError(f"token in {path} must be one word of at least {MIN_LENGTH} "
                         "characters; make one with: python -c 'import secrets; "
                         "print(secrets.token_urlsafe(32))' > TOKEN_FILE")
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"warning: token file {path} is accessible by other users; chmod 600 it",
              file=sys.stderr)
    return token

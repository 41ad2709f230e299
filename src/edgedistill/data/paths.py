"""Where dataset files are looked for, and the error that says where we looked.

An explicit ``root`` is the only place searched, so a typo in it is reported rather
than silently replaced by some other copy; without one, ``$EDGEDISTILL_DATA`` comes
first, then the places where packages and earlier runs put data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from edgedistill.errors import DataMissingError

ENV_VAR = "EDGEDISTILL_DATA"
DEFAULT_ROOTS = (
    Path.home() / ".cache" / "edgedistill" / "data",
    Path("data"),
    Path("/usr/share/datasets"),
)


def search_roots(root: str | Path | None) -> list[Path]:
    """The base folders to search, in order."""
    if root is not None:
        return [Path(root).expanduser()]
    env = os.environ.get(ENV_VAR)
    return ([Path(env).expanduser()] if env else []) + list(DEFAULT_ROOTS)


def find_dir(root: str | Path | None, subdirs: Iterable[str],
             is_complete: Callable[[Path], bool]) -> tuple[Path | None, list[Path]]:
    """First ``base/sub`` that ``is_complete``, and every folder tried (for the error)."""
    searched = []
    subdirs = list(subdirs)
    for base in search_roots(root):
        for sub in subdirs:
            folder = base / sub if sub else base
            searched.append(folder)
            if is_complete(folder):
                return folder, searched
    return None, searched


def missing(what: str, searched: list[Path], how: str, shown: int = 4) -> DataMissingError:
    """The error for absent files, in two lines: what was expected and the first
    ``shown`` folders tried, then how to get it and how to point us at it."""
    tried = ", ".join(str(p) for p in searched[:shown])
    if len(searched) > shown:
        tried += f" and {len(searched) - shown} more"
    return DataMissingError(
        f"{what} not found; searched {tried}\n"
        f"To get it: {how}; then set data.root=<folder> or {ENV_VAR}=<folder>."
    )

"""Teachers trained by this project and shipped inside the package.

``manifest.json`` records, per model, the config it was trained with, its test
accuracy, the date and the command that made it. A config names one as
``zoo:NAME`` (e.g. ``teacher: {source: zoo:resnet56-fashion_mnist}``).
"""

from __future__ import annotations

import json
from pathlib import Path

from edgedistill.errors import UsageError

HERE = Path(__file__).parent


def manifest() -> dict[str, dict]:
    path = HERE / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def weights_path(name: str) -> Path:
    entries = manifest()
    if name not in entries:
        raise UsageError(f"unknown zoo model {name!r}; shipped: {', '.join(sorted(entries)) or 'none'}"
                         " (see `edgedistill zoo`)")
    return HERE / entries[name]["file"]

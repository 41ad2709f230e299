"""Atomic checkpoints (temp file, fsync, rename) loaded with ``weights_only=True``.

A run killed mid-write leaves the previous checkpoint intact; a truncated or
foreign file is reported as a ``CheckpointError`` that names the file and the fix.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from edgedistill.errors import CheckpointError


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(tmp_path)``, fsync the file and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a damaged file
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or not an edgedistill checkpoint "
            f"({type(err).__name__}: {str(err).splitlines()[0][:120]}); delete it to "
            "start over, or point to an earlier checkpoint"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {str(path)!r} has no model state; not ours")
    return state


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor], spec: dict) -> None:
    """Weights as safetensors with the model spec in the header metadata."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    meta = {"spec": json.dumps(spec)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except Exception as err:
        raise CheckpointError(
            f"weights file {str(path)!r} is corrupt ({type(err).__name__}); re-export or "
            "retrain it"
        ) from None
    if "spec" not in meta:
        raise CheckpointError(f"weights file {str(path)!r} has no model spec in its metadata")
    return tensors, json.loads(meta["spec"])

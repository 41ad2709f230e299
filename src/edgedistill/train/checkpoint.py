"""Atomic checkpoints (temp file, fsync, rename) loaded with ``weights_only=True``.

A run killed mid-write leaves the previous checkpoint intact (and a temp file that the
next write of that checkpoint removes); a full or read-only disk is an ``OutputError``
naming the path, with the previous checkpoint intact; a truncated, foreign or
other-model file is a ``CheckpointError`` that names the file and the fix.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from edgedistill.errors import CheckpointError, OutputError, disk_problem


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_prefix(path: Path) -> str:
    return f".{path.name}."


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(tmp_path)``, fsync the file and rename it over ``path``.

    A full, read-only or forbidden disk raises ``OutputError`` naming ``path``; the
    temp file is removed and whatever ``path`` held before is left as it was.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
        os.close(fd)
        write(tmp)
        with open(tmp, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as err:
        if disk_problem(err) is None:
            raise
        kept = " (the previous one is intact)" if path.exists() else ""
        raise OutputError(f"cannot write {path}{kept}: {disk_problem(err)}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temps(path: str | Path) -> None:
    """Delete temp files that a killed write of ``path`` left behind.

    Only for files one process writes at a time (a run's checkpoints and weights)."""
    path = Path(path)
    if path.parent.is_dir():
        for stale in path.parent.glob(f"{temp_prefix(path)}*.tmp"):
            stale.unlink(missing_ok=True)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Through a Python file object, so a full disk raises ``OSError(ENOSPC)`` (torch's own
    writer, given a path, reports only "unexpected pos")."""
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)

    remove_stale_temps(path)
    atomic_write(path, write)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} is empty (0 bytes); delete it to "
                              "start over, or point to an earlier checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a damaged file
        first = (str(err).splitlines() or [""])[0][:120]
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or not an edgedistill checkpoint "
            f"({type(err).__name__}: {first}); delete it to start over, or point to an "
            "earlier checkpoint"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {str(path)!r} has no model state; not ours")
    return state


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor], spec: dict) -> None:
    """Weights as safetensors with the model spec in the header metadata."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    data = save(tensors, metadata={"spec": json.dumps(spec)})
    remove_stale_temps(path)
    # written by Python: on a full disk safetensors raises its own SafetensorError
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


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


def check_fits(module: torch.nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint whose model state does not fit ``module`` (another architecture,
    width or loss setup), naming the first difference, before anything is loaded."""
    want = module.state_dict()
    have = state["model"]
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    shapes = [k for k in want if k in have and _shape(have[k]) != _shape(want[k])]
    if not (missing or unexpected or shapes):
        return
    if shapes:
        k = shapes[0]
        diff = f"{k} is {_shape(have[k])} there, {_shape(want[k])} here"
    else:
        diff = (f"the file lacks {missing[0]}" if missing
                else f"the file has {unexpected[0]}, unknown here")
    there = json.loads(state.get("spec") or "{}").get("name")
    here = getattr(getattr(module, "eval_model", module), "spec", {}).get("name")
    names = f" (written for {there}, this config builds {here})" if there != here else ""
    raise CheckpointError(
        f"checkpoint {str(path)!r} does not fit the model this config builds{names}: "
        f"{diff}; resume with the config it was written with, or use a new --out")


def _shape(value) -> list[int]:
    return list(getattr(value, "shape", ()))

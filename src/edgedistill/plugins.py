"""User plugins: modules that register their own losses, teacher sources, halting rules,
datasets, model families or loggers with edgedistill's registries.

An experiment names them under ``plugins:`` (a dotted module, ``my_pkg.kd_losses``, or a
``.py`` file, relative to the config file's folder, then to the working directory), and
installed packages add theirs through the ``edgedistill.plugins`` entry-point group.
Importing the module is what registers its entries, so every module is imported once:
loading it again (a second config, a resumed run) is a no-op, never "registered twice".
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

from edgedistill.errors import UsageError

ENTRY_POINT_GROUP = "edgedistill.plugins"
FILE_PREFIX = "edgedistill_plugin_"

_files: dict[Path, ModuleType] = {}
_entry_points_loaded = False


def is_file(spec: str) -> bool:
    """A plugin given as a file path (``losses.py``, ``lib/kd.py``) rather than a module."""
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def resolve(spec: str, base: Path | None = None) -> str:
    """``spec`` as it should be stored in a run's config: files made absolute (found next
    to the config file first, then in the working directory), modules unchanged."""
    if not is_file(spec):
        return spec
    path = Path(spec).expanduser()
    if not path.is_absolute():
        candidates = [p for p in ((base / path) if base else None, Path.cwd() / path) if p]
        path = next((p for p in candidates if p.is_file()), candidates[0])
    return str(path.resolve())


def load_plugins(modules: list[str] = (), base: Path | None = None) -> list[ModuleType]:
    """Import every plugin in ``modules`` and every ``edgedistill.plugins`` entry point
    (those once per process). A plugin that cannot be imported is a ``UsageError``
    naming it, why, and the fix."""
    load_entry_points()
    return [_load_file(resolve(spec, base)) if is_file(spec) else _load_module(spec)
            for spec in modules]


def load_entry_points() -> None:
    """Import the modules installed packages list in the ``edgedistill.plugins`` group."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    from importlib.metadata import entry_points

    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist else "an installed package"
        try:
            ep.load()
        except Exception as err:  # any failure of foreign code is reported the same way
            raise UsageError(f"plugin {ep.value!r} (entry point {ep.name!r} of {dist}) cannot "
                             f"be imported: {_reason(err)}; fix or uninstall {dist}") from None


def source_of(module: str) -> str:
    """Where a registered entry came from, for listings: the file of a file plugin, else
    the module's dotted name."""
    mod = sys.modules.get(module)
    if module.startswith(FILE_PREFIX) and mod is not None and mod.__file__:
        return mod.__file__
    return module


def _load_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and (name == err.name or name.startswith(err.name + ".")):
            raise UsageError(
                f"plugins: cannot import {name!r}: no module named {err.name!r}; put the "
                "folder that holds it on PYTHONPATH, pip install its package, or give a "
                ".py file path") from None
        raise UsageError(f"plugins: cannot import {name!r}: it imports {err.name!r}, which "
                         f"is not installed; pip install it") from None
    except Exception as err:
        raise UsageError(f"plugins: importing {name!r} failed: {_reason(err)}; fix the "
                         "module") from None


def _load_file(spec: str) -> ModuleType:
    path = Path(spec)
    if path in _files:
        return _files[path]
    if not path.is_file():
        raise UsageError(f"plugins: file {spec!r} does not exist (looked next to the config "
                         "file, then in the working directory); fix the path")
    known = next((m for m in list(sys.modules.values())
                  if str(getattr(m, "__file__", None)).endswith(path.name)
                  and Path(m.__file__).resolve() == path), None)
    if known is not None:  # already imported under its module name: importing it again
        _files[path] = known  # would register everything a second time
        return known
    name = FILE_PREFIX + path.stem
    while name in sys.modules:
        name += "_"
    spec_ = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec_)
    sys.modules[name] = module
    try:
        spec_.loader.exec_module(module)
    except ModuleNotFoundError as err:
        del sys.modules[name]
        raise UsageError(f"plugins: cannot import {spec!r}: it imports {err.name!r}, which "
                         "is not installed or not on PYTHONPATH; pip install it or add its "
                         "folder to PYTHONPATH") from None
    except Exception as err:
        del sys.modules[name]
        raise UsageError(f"plugins: importing {spec!r} failed: {_reason(err)}; fix the "
                         "file") from None
    _files[path] = module
    return module


def _reason(err: BaseException) -> str:
    """One line: the error and the line of user code that raised it."""
    where = ""
    if isinstance(err, SyntaxError):
        where = f" ({err.filename}, line {err.lineno})"
    else:
        frames = traceback.extract_tb(err.__traceback__)
        if frames:
            where = f" ({frames[-1].filename}, line {frames[-1].lineno})"
    message = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {message}{where}"

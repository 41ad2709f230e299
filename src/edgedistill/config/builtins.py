"""The built-in datasets and model families, found in their files without importing them,
so ``data.dataset``/``data.options`` and a model's ``name``/``kwargs`` are checked at
config load without importing torch (over 1.5 s), as the losses are (``losses/catalog.py``).

A dataset file registers plain functions (``@DATASETS.register("name")``); a model file
registers functions (``@register_model("name", FAMILY)``) or, in a loop over a module
constant, the function a factory-maker returns (``for _name in NAMES:
register_model(_name, ...)(_factory(...))``). Their keyword parameters and annotations
give the settings model that ``inspect`` would give on the imported function; a default
that is not a literal (``depth: int = default_depth``) only marks the key optional. An
entry this reading cannot follow is imported instead, slower, never wrong; a plugin's
entries are read from the registries it filled (``plugins:`` are imported first).
``tests/config/test_builtins.py`` checks the reading against the imported registries.
"""

from __future__ import annotations

import ast
import functools
import inspect
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from edgedistill.losses.catalog import TYPES
from edgedistill.losses.catalog import Builtin as Entry  # (name, module, params)
from edgedistill.registry import settings_from_signature, settings_problem

PACKAGE = Path(__file__).resolve().parent.parent
DATA_SKIP = ("root", "seed")  # filled by the loader, never data.options
PYTHON_DATA = "python"  # the data of a run given as a torch Dataset (edgedistill.distill)
UNREAD = "(its default)"  # stands for a default this reading does not evaluate
CONSTANT_HELPERS = {"sorted": sorted, "set": set, "tuple": tuple, "list": list, "range": range,
                    "int": int, "str": str}


@functools.cache
def datasets() -> dict[str, dict[str, Entry]]:
    """``{"memory": {name: Entry}, "streaming": {...}}`` from ``edgedistill/data/*.py``."""
    found: dict[str, dict[str, Entry]] = {"memory": {}, "streaming": {}}
    registries = {"DATASETS": "memory", "STREAM_SOURCES": "streaming"}
    for path, tree in _files("data"):
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef):
                continue
            for deco in node.decorator_list:
                if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute)
                        and deco.func.attr == "register" and isinstance(deco.func.value, ast.Name)
                        and deco.func.value.id in registries):
                    name = _literal_str(deco)
                    if name is not None:
                        found[registries[deco.func.value.id]][name] = Entry(
                            name, f"edgedistill.data.{path.stem}", _params(node.args))
    return found


@functools.cache
def models() -> dict[str, Entry]:
    """Every zoo model registered in ``edgedistill/models/*.py``, by name."""
    found: dict[str, Entry] = {}
    for path, tree in _files("models"):
        module = f"edgedistill.models.{path.stem}"
        functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        constants = _constants(tree)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                for deco in node.decorator_list:
                    if _is_register_model(deco) and _literal_str(deco) is not None:
                        found[_literal_str(deco)] = Entry(_literal_str(deco), module,
                                                          _params(node.args))
            elif isinstance(node, ast.For) and isinstance(node.target, ast.Name):
                for name, params in _loop_entries(node, functions, constants):
                    found[name] = Entry(name, module, params)
    return found


def check_dataset_name(name: str) -> str:
    """``name`` if it is a dataset (built in, a plugin's, or ``python``: data given as a
    torch Dataset), else a ``ValueError`` listing the datasets."""
    known = {*_entries("memory"), *_entries("streaming"), PYTHON_DATA}
    if name not in known:
        raise ValueError(f"unknown dataset {name!r}; choose one of: "
                         f"{', '.join(sorted(known - {PYTHON_DATA}))} (or add yours under "
                         "plugins:)")
    return name


def check_dataset(name: str, options: dict[str, Any], streaming: bool | None) -> dict[str, Any]:
    """``options`` of dataset ``name`` (known: ``check_dataset_name``) checked against its
    loader (the streaming one when ``streaming`` is true or the set is only streamed),
    converted; a ``ValueError`` names the key and the allowed ones."""
    if name == PYTHON_DATA:
        return _python_options(options, streaming)
    memory, stream = _entries("memory"), _entries("streaming")
    # streaming: true on a set held in memory only (and the reverse) is refused when the
    # data loads (data/stream_sources.py); its options are checked here all the same
    pick = stream if name not in memory or (streaming and name in stream) else memory
    model = _settings(pick[name], "streaming" if pick is stream else "memory", DATA_SKIP)
    return _validated(model, options, f"dataset {name!r}", "data.options")


PYTHON_OPTIONS = ("image_size",)  # what streaming a Dataset reads (data/torch_dataset.py)


def _python_options(options: dict[str, Any], streaming: bool | None) -> dict[str, Any]:
    """A Dataset given from Python takes ``image_size`` (the side of the squares it
    streams as), which only streaming applies: refused with ``streaming: false``."""
    extra = sorted(set(options) - set(PYTHON_OPTIONS))
    if extra:
        raise ValueError(f"data.options {extra}: data given from Python as a Dataset takes "
                         f"only {', '.join(PYTHON_OPTIONS)} (the side of the squares it "
                         "streams as)")
    size = options.get("image_size")
    if "image_size" in options and (not isinstance(size, int) or isinstance(size, bool)
                                    or size < 1):
        raise ValueError(f"data.options.image_size: an integer >= 1 (got {size!r})")
    if size is not None and streaming is False:
        raise ValueError("data.options.image_size resizes a Dataset as it streams; with "
                         "data.streaming: false it is held in memory at its own size: "
                         "remove one of them")
    return dict(options)


def check_model(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` of zoo model ``name`` checked against its factory, converted; a
    ``ValueError`` names the key and the allowed ones. Foreign names (``torchvision:``,
    ``timm:``, a Python module's) check their options when they are built."""
    if ":" in name:
        return kwargs
    zoo = _entries("models")
    if name not in zoo:
        raise ValueError(f"unknown model {name!r}; choose one of: "
                         f"{', '.join(sorted(zoo))} (or add yours under plugins:, or give "
                         "torchvision:NAME, timm:NAME or factory: pkg.mod:fn)")
    return _validated(_settings(zoo[name], "models", ()), kwargs, f"model {name!r}", "kwargs")


REGISTRIES = {"memory": ("edgedistill.data.base", "DATASETS"),
              "streaming": ("edgedistill.data.stream_sources", "STREAM_SOURCES"),
              "models": ("edgedistill.models.zoo", "MODELS")}


def _entries(kind: str) -> dict[str, Entry]:
    """Built-in entries of ``kind`` and those a plugin registered (its registry is then
    imported already: nothing is imported here)."""
    builtin = models() if kind == "models" else datasets()[kind]
    module, attr = REGISTRIES[kind]
    registry = getattr(sys.modules.get(module), attr, None)
    plugins = {n: Entry(n, module, None) for n in (registry or ()) if n not in builtin}
    return {**builtin, **plugins}


def _settings(entry: Entry, kind: str, skip: tuple[str, ...]) -> type[BaseModel]:
    if entry.params is not None:
        return _stub_settings(entry, skip)
    from importlib import import_module  # a plugin's, or a file this reading cannot follow

    import_module(entry.module)
    module, attr = REGISTRIES[kind]
    factory = getattr(import_module(module), attr).get(entry.name)
    return settings_from_signature(factory, skip, title=entry.name)


@functools.cache
def _stub_settings(entry: Entry, skip: tuple[str, ...]) -> type[BaseModel]:
    def stub() -> None:
        """Stands in for the unimported function."""

    stub.__signature__ = inspect.Signature(list(entry.params))
    return settings_from_signature(stub, skip, title=entry.name)


def _validated(model: type[BaseModel], raw: dict[str, Any], what: str, where: str
               ) -> dict[str, Any]:
    """``raw`` checked and converted; a wrong value names ``where.key`` and its type."""
    try:
        return model.model_validate(raw).model_dump(exclude_unset=True)
    except ValidationError as err:
        wrong = [e for e in err.errors() if e["type"] not in ("extra_forbidden", "missing")]
        if not wrong:
            raise ValueError(settings_problem(err, model, what, where)) from None
        lines = []
        for e in wrong:
            key = ".".join(str(p) for p in e["loc"])
            kind = model.model_fields[e["loc"][0]].annotation
            lines.append(f"{where}.{key}: {e['msg'].lower()} (got {e.get('input')!r:.60}); "
                         f"{what} takes {getattr(kind, '__name__', kind)} here")
        raise ValueError("; ".join(lines)) from None


def _files(folder: str):
    for path in sorted((PACKAGE / folder).glob("*.py")):
        if path.stem != "__init__":
            yield path, ast.parse(path.read_text(encoding="utf-8"))


def _literal_str(call: ast.Call) -> str | None:
    arg = call.args[0] if call.args else None
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


def _is_register_model(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "register_model")


def _constants(tree: ast.Module) -> dict[str, Any]:
    """Module-level names bound to expressions of literals and earlier such names."""
    env: dict[str, Any] = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            try:
                env[node.targets[0].id] = eval(compile(ast.Expression(node.value), "", "eval"),
                                               {"__builtins__": CONSTANT_HELPERS}, dict(env))
            except Exception:  # noqa: BLE001  not a constant: this reading skips it
                continue
    return env


def _loop_entries(loop: ast.For, functions: dict[str, ast.FunctionDef],
                  constants: dict[str, Any]):
    """(name, params) of ``for v in CONST: register_model(v, ...)(maker(...))``: the
    function ``maker`` returns is the one its body defines."""
    if not isinstance(loop.iter, ast.Name) or loop.iter.id not in constants:
        return
    for stmt in loop.body:
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if not (isinstance(call, ast.Call) and _is_register_model(call.func) and call.func.args
                and isinstance(call.func.args[0], ast.Name)
                and call.func.args[0].id == loop.target.id):
            continue
        maker = call.args[0] if len(call.args) == 1 else None
        params = None
        if isinstance(maker, ast.Call) and isinstance(maker.func, ast.Name) \
                and maker.func.id in functions:
            inner = [n for n in functions[maker.func.id].body if isinstance(n, ast.FunctionDef)]
            params = _params(inner[0].args) if len(inner) == 1 else None
        for name in constants[loop.iter.id]:
            yield name, params


def _params(args: ast.arguments) -> tuple[inspect.Parameter, ...] | None:
    if args.vararg or args.kwarg or args.posonlyargs:
        return None
    defaults = [None] * (len(args.args) - len(args.defaults)) + list(args.defaults)
    pairs = [*zip(args.args, defaults, strict=True),
             *zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    out = []
    for i, (arg, default) in enumerate(pairs):
        kind = (inspect.Parameter.POSITIONAL_OR_KEYWORD if i < len(args.args)
                else inspect.Parameter.KEYWORD_ONLY)
        try:
            annotation = (inspect.Parameter.empty if arg.annotation is None
                          else eval(ast.unparse(arg.annotation), {"__builtins__": {}}, TYPES))
        except (NameError, TypeError, SyntaxError, AttributeError):
            return None
        try:
            value = inspect.Parameter.empty if default is None else ast.literal_eval(default)
        except ValueError:
            value = UNREAD
        out.append(inspect.Parameter(arg.arg, kind, default=value, annotation=annotation))
    return tuple(out)

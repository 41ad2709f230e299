"""The built-in loss terms, found in this folder's files without importing them.

A loss file imports torch (every term is an ``nn.Module``), which takes over 1.5 s; a
config must be checked faster than that. So each file is read with ``ast``: its
``@register("name")`` classes and the keyword parameters of their ``__init__``
(annotation and literal default) give the same signature, hence the same settings model,
that ``inspect`` would give on the imported class. A term this reading cannot follow (a
default that is not a literal, an annotation beyond the plain types, ``Literal`` and
``Annotated[T, Field(...)]`` (a bound: ``Annotated[int, Field(ge=0)]``), an ``__init__``
inherited from another file) is marked ``params=None``: its file is imported instead,
slower, never wrong. ``tests/losses/test_catalog.py`` checks the two agree.
"""

from __future__ import annotations

import ast
import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import Field

NOT_TERMS = {"__init__", "base", "catalog", "common", "registry"}
BASES_WITHOUT_PARAMS = {"LossTerm", "FeatureTerm"}
TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "dict": dict,
         "tuple": tuple, "None": None, "Any": Any, "Literal": Literal, "Optional": Optional,
         "Annotated": Annotated, "Field": Field}


@dataclass(frozen=True)
class Builtin:
    """A registered term as its file spells it; ``params`` None: import the file to know."""

    name: str
    module: str
    params: tuple[inspect.Parameter, ...] | None


@functools.cache
def builtins() -> dict[str, Builtin]:
    """Every ``@register``-ed term in ``edgedistill/losses/*.py``, by name."""
    found: dict[str, Builtin] = {}
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.stem in NOT_TERMS:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
        for cls in classes.values():
            name = _registered_name(cls)
            if name is not None:
                found[name] = Builtin(name, f"edgedistill.losses.{path.stem}",
                                      _init_params(cls, classes))
    return found


def signature_stub(entry: Builtin) -> Any:
    """A function carrying the term's ``__init__`` signature, for
    ``registry.settings_from_signature``."""

    def stub() -> None:
        """Stands in for the unimported class."""

    stub.__signature__ = inspect.Signature(list(entry.params))
    stub.__name__ = entry.name
    return stub


def _registered_name(cls: ast.ClassDef) -> str | None:
    for deco in cls.decorator_list:
        if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Name)
                and deco.func.id == "register" and deco.args
                and isinstance(deco.args[0], ast.Constant) and isinstance(deco.args[0].value, str)):
            return deco.args[0].value
    return None


def _init_params(cls: ast.ClassDef, classes: dict[str, ast.ClassDef]
                 ) -> tuple[inspect.Parameter, ...] | None:
    init = next((node for node in cls.body
                 if isinstance(node, ast.FunctionDef) and node.name == "__init__"), None)
    if init is not None:
        return _params(init.args)
    if len(cls.bases) != 1 or not isinstance(cls.bases[0], ast.Name):
        return None
    base = cls.bases[0].id
    if base in BASES_WITHOUT_PARAMS:
        return (inspect.Parameter("student_layers", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                  default=None),
                inspect.Parameter("teacher_layers", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                  default=None))
    return _init_params(classes[base], classes) if base in classes else None


def _params(args: ast.arguments) -> tuple[inspect.Parameter, ...] | None:
    if args.vararg or args.kwarg or args.posonlyargs:
        return None
    positional = args.args[1:]  # self
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = [*zip(positional, defaults, strict=True),
             *zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    out = []
    for i, (arg, default) in enumerate(pairs):
        kind = (inspect.Parameter.POSITIONAL_OR_KEYWORD if i < len(positional)
                else inspect.Parameter.KEYWORD_ONLY)
        try:
            annotation = (inspect.Parameter.empty if arg.annotation is None
                          else eval(ast.unparse(arg.annotation), {"__builtins__": {}}, TYPES))
            value = inspect.Parameter.empty if default is None else ast.literal_eval(default)
        except (NameError, ValueError, TypeError, SyntaxError):
            return None
        out.append(inspect.Parameter(arg.arg, kind, default=value, annotation=annotation))
    return tuple(out)

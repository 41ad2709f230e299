"""The base of every schema and the loader: YAML in, one clear line per mistake out
(offending key, allowed values), ``--set`` overrides, plugins imported first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
)

from edgedistill.errors import UsageError


class Strict(BaseModel):
    """Base of every schema: unknown keys are errors, and so are inf and nan in any float
    field (YAML's ``.inf`` would otherwise pass ``gt=0`` and train on garbage)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=c`` overrides; values are parsed as YAML (numbers, lists, null)."""
    for item in overrides:
        if "=" not in item:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=5")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UsageError(f"--set {key}: {part!r} is not a section")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise UsageError(f"--set {item!r}: the value is not valid YAML "
                             f"({yaml_problem(err)}); give a YAML value such as 5, [1, 2] or "
                             "'\"text\"'") from None
    return raw


def yaml_problem(err: yaml.YAMLError) -> str:
    """The first line of a YAML parser's complaint and where it is (``line L, column C``)."""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def _allowed_keys(schema: type[BaseModel], loc: tuple) -> list[str]:
    model: Any = schema
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        args = [a for a in getattr(ann, "__args__", ()) if isinstance(a, type)]
        candidates = [ann, *args]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)),
                     None)
        if model is None:
            return []
    return sorted(getattr(model, "model_fields", {}))


def format_validation_error(err: ValidationError, schema: type[BaseModel], source: str) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(schema, loc)
            lines.append(f"unknown key {key!r}; allowed keys here: {', '.join(allowed)}")
        elif e["type"] == "missing":
            lines.append(f"missing key {key!r}")
        else:
            lines.append(f"{key}: {e['msg']} (got {short_repr(e.get('input'))})")
    return f"{source}: " + "; ".join(lines)


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, so one bad value stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def validate(raw: dict, schema: type[BaseModel], source: str = "config") -> Any:
    try:
        return schema.model_validate(raw)
    except ValidationError as err:
        raise UsageError(format_validation_error(err, schema, source)) from None


def read_text_file(path: str | Path, what: str = "file") -> str:
    """The text of a file the user named; missing, unreadable or binary is a ``UsageError``
    naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{what} {str(path)!r} does not exist"
                         + (" (it is a directory)" if path.is_dir() else ""))
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(f"{what} {str(path)!r} is not UTF-8 text (byte {err.start} is "
                         f"{err.object[err.start:err.start + 1]!r}); is it a binary file?"
                         ) from None
    except OSError as err:
        raise UsageError(f"cannot read {what} {str(path)!r}: {err.strerror}") from None


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict:
    """A YAML file's top-level mapping; a missing or binary file, bad YAML or another top
    level is a ``UsageError`` naming the file."""
    path = Path(path)
    text = read_text_file(path, what)
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise UsageError(f"{path}: not valid YAML: {yaml_problem(err)}; fix the file") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: the top level must be a mapping of keys")
    return raw


def load_config(path: str | Path, schema: type[BaseModel], overrides: list[str] = ()) -> Any:
    """Read, override (``--set``) and validate an experiment YAML; its ``plugins`` are
    imported first, ``.py`` files found next to the config file before the working
    directory."""
    raw = plugin_paths(read_yaml_mapping(path), Path(path).parent)
    return validate(apply_overrides(raw, list(overrides)), schema, str(path))


def plugin_paths(raw: dict, base: Path) -> dict:
    """``raw`` with its ``plugins`` files made absolute against ``base`` (the config's folder)."""
    specs = raw.get("plugins")
    if isinstance(specs, list) and all(isinstance(s, str) for s in specs):
        from edgedistill.plugins import resolve

        raw["plugins"] = [resolve(s, base) for s in specs]
    return raw


def dump_config(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)

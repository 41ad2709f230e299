"""The one generic registry: models, datasets, losses, teacher sources, halting rules and
loggers use it. Each entry may own a pydantic *settings model*; configs name an entry by
its tag (``name`` / ``mode`` / ``kind``) and the rest of that mapping is validated
against the entry's settings model at config load, so a misspelt parameter is refused
with the allowed keys before any data is read."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterator, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from edgedistill.errors import UsageError

T = TypeVar("T")


class Settings(BaseModel):
    """Base of every plugin settings model: unknown keys and inf/nan are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, arbitrary_types_allowed=True)


def settings_from_signature(obj: Any, skip: tuple[str, ...] = (), title: str = "") -> type[Settings]:
    """A settings model whose fields are the keyword parameters of ``obj`` (a class's
    ``__init__`` or a function), with their annotations and defaults. ``skip`` names
    parameters the caller fills in itself; ``**kwargs`` makes the model accept any key."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    fields: dict[str, Any] = {}
    extra = "forbid"
    for pname, param in inspect.signature(target, eval_str=True).parameters.items():
        if pname in ("self", *skip) or param.kind is param.VAR_POSITIONAL:
            continue
        if param.kind is param.VAR_KEYWORD:
            extra = "allow"
            continue
        ann = Any if param.annotation is param.empty else param.annotation
        default = ... if param.default is param.empty else param.default
        fields[pname] = (ann, default)
    base = type(f"{title or getattr(obj, '__name__', 'Plugin')}Settings", (Settings,),
                {"model_config": ConfigDict(extra=extra, allow_inf_nan=False,
                                            arbitrary_types_allowed=True)})
    return create_model(base.__name__, __base__=base, **fields)


# every registry made, so that tests can forget the entries their plugins registered
REGISTRIES: list[Registry] = []


class Registry:
    """Maps names to factories. ``@REG.register("name")`` adds one.

    The description defaults to the first line of the factory's docstring, so
    listings (``edgedistill losses``) stay in step with the code. ``settings`` is the
    entry's pydantic settings model (a :class:`Settings` subclass); when omitted,
    ``settings_model`` derives one from the factory's signature (skipping ``skip``).
    """

    def __init__(self, kind: str, skip: tuple[str, ...] = ()):
        self.kind = kind
        self.skip = skip
        self._items: dict[str, Any] = {}
        self._descriptions: dict[str, str] = {}
        self._settings: dict[str, type[BaseModel] | None] = {}
        self._origins: dict[str, str] = {}
        REGISTRIES.append(self)

    def forget(self, name: str) -> None:
        """Remove ``name`` from every table of this registry (a test's plugins)."""
        for table in vars(self).values():
            if isinstance(table, dict):
                table.pop(name, None)

    def register(self, name: str, description: str | None = None,
                 settings: type[BaseModel] | None = None) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            doc = description or (obj.__doc__ or "").strip().splitlines()
            self._descriptions[name] = doc if isinstance(doc, str) else (doc[0] if doc else "")
            self._settings[name] = settings
            self._origins[name] = getattr(obj, "__module__", "") or ""
            return obj

        return add

    def get(self, name: str) -> Any:
        if name not in self._items:
            raise UsageError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            )
        return self._items[name]

    def describe(self, name: str) -> str:
        self.get(name)
        return self._descriptions[name]

    def origin(self, name: str) -> str:
        """The module that registered ``name`` (plugins show where they came from)."""
        self.get(name)
        return self._origins[name]

    def settings_model(self, name: str) -> type[BaseModel]:
        self.get(name)
        if self._settings[name] is None:
            self._settings[name] = settings_from_signature(self._items[name], self.skip,
                                                           title=name)
        return self._settings[name]

    def validate_settings(self, name: str, raw: dict[str, Any], where: str = "") -> BaseModel:
        """``raw`` checked against ``name``'s settings model; a ``ValueError`` (which
        pydantic reports at the config key) lists the offending and the allowed keys."""
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of: "
                             f"{', '.join(self.names())}")
        model = self.settings_model(name)
        try:
            return model.model_validate(raw)
        except ValidationError as err:
            raise ValueError(settings_problem(err, model, f"{self.kind} {name!r}", where)) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def settings_problem(err: ValidationError, model: type[BaseModel], what: str, where: str) -> str:
    """One line per problem in a plugin's settings, naming the allowed keys for typos."""
    allowed = ", ".join(sorted(model.model_fields)) or "(none)"
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(settings)"
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown {where + ' ' if where else ''}key {key!r} for {what}; "
                         f"allowed: {allowed}")
        elif e["type"] == "missing":
            parts.append(f"{what} needs {where + ' ' if where else ''}key {key!r}")
        else:
            parts.append(f"{what} {key}: {e['msg']} (got {e.get('input')!r:.60})")
    return "; ".join(parts)

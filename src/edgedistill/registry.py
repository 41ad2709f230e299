"""The one generic registry: models, datasets, losses and teacher sources use it."""

from __future__ import annotations

from typing import Any, Callable, Iterator, TypeVar

from edgedistill.errors import UsageError

T = TypeVar("T")


class Registry:
    """Maps names to factories. ``@REG.register("name")`` adds one.

    The description defaults to the first line of the factory's docstring, so
    listings (``edgedistill losses``) stay in step with the code.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}
        self._descriptions: dict[str, str] = {}

    def register(self, name: str, description: str | None = None) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            doc = description or (obj.__doc__ or "").strip().splitlines()
            self._descriptions[name] = doc if isinstance(doc, str) else (doc[0] if doc else "")
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

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

"""The loss registry, kept apart from ``__init__`` so method files can import it without cycles.

Built-in terms are known from their files (``catalog.py``) and imported on first use,
so a config's loss names and params are checked without importing torch; plugin terms
register as they are imported.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable, TypeVar

from pydantic import BaseModel

from edgedistill.losses.catalog import builtins, signature_stub
from edgedistill.registry import Registry, settings_from_signature

T = TypeVar("T")


class LossRegistry(Registry):
    """``Registry`` that also holds the built-in terms before their files are imported."""

    def __init__(self) -> None:
        super().__init__("loss", skip=("student_layers", "teacher_layers"))
        self._read: dict[str, type[BaseModel]] = {}

    def register(self, name: str, description: str | None = None,
                 settings: type[BaseModel] | None = None) -> Callable[[T], T]:
        add = super().register(name, description, settings)

        def checked(obj: T) -> T:
            home = builtins().get(name)
            if home is not None and home.module != getattr(obj, "__module__", None):
                raise ValueError(f"loss {name!r} is built in ({home.module}); give "
                                 f"{getattr(obj, '__qualname__', obj)!r} another name")
            return add(obj)

        return checked

    def get(self, name: str) -> Any:
        if name not in self._items and name in builtins():
            import_module(builtins()[name].module)
        return super().get(name)

    def settings_model(self, name: str) -> type[BaseModel]:
        entry = builtins().get(name)
        if name in self._items or entry is None or entry.params is None:
            return super().settings_model(name)
        if name not in self._read:
            self._read[name] = settings_from_signature(signature_stub(entry), self.skip,
                                                       title=name)
        return self._read[name]

    def load_all(self) -> None:
        """Import every built-in term (listings describe them from their docstrings)."""
        for entry in builtins().values():
            import_module(entry.module)

    def names(self) -> list[str]:
        return sorted(set(self._items) | set(builtins()))

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in builtins()


LOSSES = LossRegistry()


def register(name: str) -> Callable[[T], T]:
    """Register a term under ``name`` and give the class that name, so its errors can cite it."""

    def add(cls: T) -> T:
        cls.name = name
        return LOSSES.register(name)(cls)

    return add

"""The loss registry, kept apart from ``__init__`` so method files can import it without cycles."""

from __future__ import annotations

from typing import Callable, TypeVar

from edgedistill.registry import Registry

LOSSES = Registry("loss", skip=("student_layers", "teacher_layers"))

T = TypeVar("T")


def register(name: str) -> Callable[[T], T]:
    """Register a term under ``name`` and give the class that name, so its errors can cite it."""

    def add(cls: T) -> T:
        cls.name = name
        return LOSSES.register(name)(cls)

    return add

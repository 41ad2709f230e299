"""The model registry and ``create_model``: every model is rebuilt from a plain spec dict.

A spec (``{"name": ..., "num_classes": ..., "in_channels": ..., **options}``) is what
configs, checkpoints and student derivation pass around, so a model never has to be
pickled to be rebuilt. Each family file registers its factories together with a
:class:`Family`, which knows how that family names derived variants and which
student derivations it supports.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

from torch import nn

from edgedistill.errors import UsageError
from edgedistill.registry import Registry

MODELS = Registry("model")
_FIXED = ("num_classes", "in_channels")

F = TypeVar("F", bound=Callable[..., nn.Module])


class Family:
    """How one model family names its variants and derives students.

    The base class supports no derivation and is what a model registered straight
    into ``MODELS`` gets. A family overrides what it can do: ``width_key`` names the
    option that scales channels (narrower students); ``can_change_depth`` with
    ``depths`` / ``depth`` / ``with_depth`` changes the number of blocks (shallower ones).
    """

    name = "other"
    width_key: str | None = None
    can_change_depth = False

    def display_name(self, spec: dict) -> str:
        return spec["name"]

    def depths(self, spec: dict) -> tuple[int, ...]:
        """Standard depths a shallower student of this spec may take."""
        return ()

    def depth(self, spec: dict) -> int:
        raise UsageError(f"{spec['name']!r} has no variable depth")

    def with_depth(self, spec: dict, depth: int) -> dict:
        raise UsageError(f"{spec['name']!r} has no variable depth")


_FAMILIES: dict[str, Family] = {}


def register_model(name: str, family: Family, description: str | None = None) -> Callable[[F], F]:
    """Register a factory ``(num_classes, in_channels, **options) -> nn.Module``.

    The factory sets ``stage_names``, ``embedding_name`` and ``input_size`` on the
    model; ``create_model`` adds ``spec`` and ``display_name``.
    """

    def add(factory: F) -> F:
        MODELS.register(name, description)(factory)
        _FAMILIES[name] = family
        return factory

    return add


def family_of(name: str) -> Family:
    if ":" in name:  # torchvision:/timm: names and factories (models/foreign.py)
        from edgedistill.models import foreign

        return foreign.family(name)
    MODELS.get(name)
    return _FAMILIES.get(name) or Family()


def families() -> dict[str, list[str]]:
    """Family name -> registered model names, for messages that list what supports what."""
    out: dict[str, list[str]] = {}
    for name in MODELS.names():
        out.setdefault(family_of(name).name, []).append(name)
    return out


def model_options(name: str) -> dict[str, Any]:
    """The options a model takes beyond num_classes/in_channels, with their defaults."""
    if ":" in name:
        from edgedistill.models import foreign

        fam = foreign.family(name)
        return dict(fam.options) if hasattr(fam, "options") else foreign.factory_options(name)
    params = inspect.signature(MODELS.get(name)).parameters
    return {k: p.default for k, p in params.items() if k not in _FIXED}


def resolved_options(spec: dict) -> dict[str, Any]:
    """A spec's options with every default filled in, so families need not repeat them."""
    check_spec(spec)
    options = model_options(spec["name"])
    options.update({k: v for k, v in spec.items() if k in options})
    return options


def check_spec(spec: dict) -> None:
    """Fail early, naming the valid choices, on an unknown model name or option."""
    if "name" not in spec:
        raise UsageError(f"model spec has no 'name'; choose one of: {', '.join(MODELS.names())}")
    if ":" in spec["name"]:  # a foreign model checks its options when it is built
        return
    options = model_options(spec["name"])
    unknown = sorted(set(spec) - set(options) - set(_FIXED) - {"name"})
    if unknown:
        valid = ", ".join(options) or "none"
        raise UsageError(
            f"model {spec['name']!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {valid}"
        )
    for key in _FIXED:
        value = spec.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"model {key} must be a positive integer, got {value!r}")


def create_model(name: str, num_classes: int | None = None, in_channels: int | None = None,
                 **kw: Any) -> nn.Module:
    """Build a registered model (10 classes, 1 channel unless given), or a foreign one
    (``torchvision:NAME``, ``timm:NAME``, ``pkg.mod:factory``); ``create_model(**model.spec)``
    rebuilds it."""
    kw = {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}
    if ":" in name:
        from edgedistill.models import foreign

        return foreign.create(name, num_classes, in_channels, **kw)
    num_classes = 10 if num_classes is None else num_classes
    in_channels = 1 if in_channels is None else in_channels
    spec = {"name": name, "num_classes": num_classes, "in_channels": in_channels, **kw}
    check_spec(spec)
    model = MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, **kw)
    disable_inplace(model)
    model.spec = spec
    model.display_name = family_of(name).display_name(spec)
    return model


def disable_inplace(model: nn.Module) -> None:
    """Turn off in-place activations so a hooked tensor is not overwritten later in forward."""
    for module in model.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False


def scale_channels(channels: int, width: float) -> int:
    """Channels times a width multiplier, rounded half up and never below 1."""
    return max(1, int(channels * width + 0.5))


def check_width(width: Any, key: str = "width") -> float:
    if isinstance(width, bool) or not isinstance(width, (int, float)) or width <= 0:
        raise UsageError(f"model option {key} must be a positive number, got {width!r}")
    return float(width)


def check_blocks(blocks: Any, stages: int) -> list[int]:
    ok = isinstance(blocks, (list, tuple)) and len(blocks) == stages and all(
        isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in blocks
    )
    if not ok:
        raise UsageError(
            f"model option blocks must be {stages} positive integers (blocks per stage), "
            f"got {blocks!r}"
        )
    return list(blocks)


def width_suffix(width: float) -> str:
    return "" if width == 1 else f"-w{width:g}"

"""Models from outside the zoo: a user's factory function (``pkg.mod:fn`` or
``path/to/file.py:fn``), ``torchvision:NAME`` and ``timm:NAME``, with weights from any
common file layout or the library's published ones (``pretrained``).

A foreign model carries a ``spec`` like a zoo model (``{"name": ..., "num_classes": ...,
"in_channels": ..., **kwargs}``), so ``create_model(**spec)`` rebuilds its architecture
anywhere the factory is importable: run directories, checkpoints and teacher replicas
work unchanged. Weights are not part of the spec; what was loaded is recorded in
``model.weights_info`` (file, sha256, keys loaded), which the run's provenance reports.
A factory receives ``num_classes`` / ``in_channels`` only if its signature takes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import io
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from edgedistill.errors import UsageError
from edgedistill.models.zoo import Family

LIBRARIES = ("torchvision", "timm")
# wrappers whose names end up in front of every key: DataParallel/DDP, torch.compile,
# Lightning-style modules, our own Distiller checkpoints
PREFIXES = ("module.", "_orig_mod.", "model.", "student.", "net.", "backbone.")
NESTINGS = ("state_dict", "model_state_dict", "model", "net", "module", "weights")


def is_foreign(name: str) -> bool:
    """``torchvision:``/``timm:`` names and factories have a colon; zoo names never do."""
    return ":" in name


def library_of(name: str) -> str | None:
    library = name.split(":", 1)[0]
    return library if library in LIBRARIES else None


class FactoryFamily(Family):
    """A user's own function: nothing to derive from it (its structure is unknown)."""

    name = "factory"

    def display_name(self, spec: dict) -> str:
        return spec["name"].rpartition(":")[2]


FACTORY = FactoryFamily()


def family(name: str) -> Family:
    if library_of(name):
        from edgedistill.models import torchvision_hub

        return torchvision_hub.family(name)
    return FACTORY


def import_factory(ref: str) -> Callable[..., nn.Module]:
    """The function named by ``pkg.mod:fn`` or ``path/to/file.py:fn``."""
    where, _, attr = ref.rpartition(":")
    if not where or not attr.isidentifier():
        raise UsageError(f"factory {ref!r} must be 'package.module:function' or "
                         "'path/to/file.py:function'")
    try:
        module = _load_file(Path(where)) if where.endswith(".py") else \
            importlib.import_module(where)
    except UsageError:
        raise
    except Exception as err:
        raise UsageError(f"factory {ref!r}: cannot import {where!r} ({type(err).__name__}: "
                         f"{err}); install the package or give a .py file path") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise UsageError(f"factory {ref!r}: {where!r} has no function {attr!r}; it defines: "
                         f"{', '.join(found[:12]) or 'nothing callable'}")
    return fn


def _load_file(path: Path):
    """Import a .py file once per resolved path (its classes stay the same objects)."""
    if not path.is_file():
        raise UsageError(f"factory file {str(path)!r} does not exist")
    resolved = path.resolve()
    name = f"edgedistill_user_{resolved.stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def absolute_paths(ref: Any) -> Any:
    """A model config whose factory file and weights are absolute paths (where they exist
    here), so processes with another working directory find them."""
    update = {}
    if ref.factory and Path(ref.factory.rpartition(":")[0]).is_file():
        update["factory"] = _absolute_file(ref.factory)
    if ref.weights and Path(ref.weights).is_file():
        update["weights"] = str(Path(ref.weights).resolve())
    return ref.model_copy(update=update)


def _absolute_file(ref: str) -> str:
    where, _, attr = ref.rpartition(":")
    return f"{Path(where).resolve()}:{attr}" if where.endswith(".py") else ref


def _takes(fn: Callable, key: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return key in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def factory_options(ref: str) -> dict[str, Any]:
    """The keyword parameters of a factory with their defaults (for messages and specs)."""
    params = inspect.signature(import_factory(ref)).parameters
    return {k: (None if p.default is p.empty else p.default) for k, p in params.items()
            if k not in ("num_classes", "in_channels") and p.kind is not p.VAR_KEYWORD}


def io_sizes(model: nn.Module) -> tuple[int | None, int | None]:
    """(classes, input channels) read off the first and last layers; None where unknown."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not layers:
        return None, None
    first, last = layers[0], layers[-1]
    channels = first.in_channels if isinstance(first, nn.Conv2d) else None
    classes = last.out_features if isinstance(last, nn.Linear) else None
    return classes, channels


def create(name: str, num_classes: int | None = None, in_channels: int | None = None,
           **options: Any) -> nn.Module:
    """Build a foreign architecture (fresh weights); ``model.spec`` rebuilds it."""
    from edgedistill.models.zoo import disable_inplace

    library = library_of(name)
    try:
        if library:
            from edgedistill.models import torchvision_hub

            model = torchvision_hub.build(name, num_classes or 1000, in_channels or 3, options)
        else:
            fn = import_factory(name)
            name = _absolute_file(name)  # the spec rebuilds it from any working directory
            sizes = {k: v for k, v in (("num_classes", num_classes), ("in_channels", in_channels))
                     if v is not None and _takes(fn, k) and k not in options}
            model = fn(**options, **sizes)
    except UsageError:
        raise
    except TypeError as err:
        raise UsageError(f"model {name!r}: {err}; check its kwargs") from None
    if not isinstance(model, nn.Module):
        raise UsageError(f"factory {name!r} returned {type(model).__name__}, not a torch "
                         "nn.Module")
    classes, channels = io_sizes(model)
    for key, want, have in (("num_classes", num_classes, classes),
                            ("in_channels", in_channels, channels)):
        if want is not None and have is not None and want != have:
            raise UsageError(f"model {name!r} has {key}={have} but {want} is needed; let the "
                             f"factory take a {key} parameter or set it in kwargs")
    disable_inplace(model)
    spec = {"name": name, **options}
    for key, value in (("num_classes", classes or num_classes),
                       ("in_channels", channels or in_channels)):
        if value is not None:
            spec[key] = value
    model.spec = spec
    model.display_name = family(name).display_name(spec)
    model.weights_info = None
    return model


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file, a state dict or a full checkpoint (.pt/.pth),
    loaded with ``weights_only=True``; nested ``state_dict``/``model`` entries unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"weights file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        first = (str(err).splitlines() or [""])[0][:160]
        raise UsageError(f"weights file {str(path)!r} cannot be read ({type(err).__name__}: "
                         f"{first}); give a state dict (.pt/.pth) or a .safetensors file"
                         ) from None
    while isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        inner = next((state[k] for k in NESTINGS if isinstance(state.get(k), dict)), None)
        if inner is None:
            break
        state = inner
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if not isinstance(state, dict) or not state:
        raise UsageError(f"weights file {str(path)!r} holds no state dict (top level: "
                         f"{type(state).__name__}); save model.state_dict()")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def strip_prefixes(state: dict[str, torch.Tensor], want: set[str]) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes (``module.``, ``_orig_mod.``, ...) while that matches more of
    the model's keys; keys outside the prefix (a distiller's loss terms) are dropped too."""
    def overlap(s):
        return len(want & set(s))

    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if overlap(stripped) > overlap(state):
                state, changed = stripped, True
    return state


def _few(keys: list[str], limit: int = 3) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_into(model: nn.Module, state: dict[str, torch.Tensor], strict: bool,
              what: str) -> dict[str, Any]:
    """Load ``state`` into ``model``; with ``strict`` any missing, unexpected or
    differently shaped key is an error that lists them, without it they are skipped."""
    want = model.state_dict()
    state = strip_prefixes(state, set(want))
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    shapes = [k for k in want if k in state and state[k].shape != want[k].shape]
    name = getattr(model, "spec", {}).get("name", type(model).__name__)
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} ({_few(missing)})")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} ({_few(unexpected)})")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} of another shape ({k}: {list(state[k].shape)} in the "
                     f"file, {list(want[k].shape)} in the model)")
    fits = [k for k in want if k in state and k not in shapes]
    if parts and (strict or not fits):
        fix = ("pass strict: false to load the keys that fit, or " if strict and fits else "")
        raise UsageError(f"{what} does not fit {name}: {'; '.join(parts)}; {fix}check the "
                         "model name and kwargs (e.g. num_classes)")
    model.load_state_dict({k: state[k] for k in fits}, strict=False)
    return {"loaded_keys": len(fits), "skipped_keys": missing + shapes + unexpected}


def pretrained_state(name: str) -> dict[str, torch.Tensor]:
    """The library's published weights for ``torchvision:ARCH`` (downloaded to torch's
    cache on first use); offline this is one ``UsageError`` line, never a traceback."""
    library, arch = name.split(":", 1)
    if library != "torchvision":
        raise UsageError(f"pretrained: true is handled by timm for {name}")
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError):
        raise UsageError(f"torchvision publishes no weights for {arch!r}") from None
    chatter = io.StringIO()  # torch.hub prints "Downloading: ..." (to stdout)
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            return weights.get_state_dict(progress=False, check_hash=True)
    except OSError as err:
        reason = getattr(err, "reason", None) or err.strerror or err
        raise UsageError(f"pretrained: true for {name} must download {weights.url} and "
                         f"cannot ({reason}); fetch that file where a network exists and "
                         "give it as weights: PATH") from None


@contextlib.contextmanager
def _hub_offline_if_unreachable():
    """Without a route to the Hugging Face hub, use only its local cache: otherwise the
    hub retries for most of a minute before giving up."""
    import socket

    import huggingface_hub.constants as hub

    before = hub.HF_HUB_OFFLINE
    try:
        socket.getaddrinfo("huggingface.co", 443)
    except OSError:
        hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = before


def _timm_pretrained(name: str, num_classes: int | None, in_channels: int | None,
                     options: dict) -> nn.Module:
    import timm

    arch = name.split(":", 1)[1]
    sizes = {k: v for k, v in (("num_classes", num_classes), ("in_chans", in_channels))
             if v is not None}
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter), \
                _hub_offline_if_unreachable():
            return timm.create_model(arch, pretrained=True, **sizes, **options)
    except Exception as err:  # huggingface_hub raises several offline errors
        first = (str(err).splitlines() or [type(err).__name__])[0][:160]
        raise UsageError(f"pretrained: true for {name} must download its weights and "
                         f"cannot ({first}); download them where a network exists and give "
                         "the file as weights: PATH") from None


def build(name: str, num_classes: int | None = None, in_channels: int | None = None, *,
          kwargs: dict | None = None, weights: str | Path | None = None,
          pretrained: bool = False, strict: bool = True) -> nn.Module:
    """A model (foreign or zoo) with its weights: a file (``weights``), the library's
    published ones (``pretrained``) or none (fresh). Returned on the CPU in train mode."""
    from edgedistill.models.zoo import create_model

    options = dict(kwargs or {})
    num_classes = options.pop("num_classes", num_classes)  # kwargs win over the dataset's
    in_channels = options.pop("in_channels", in_channels)
    if weights is not None and pretrained:
        raise UsageError(f"model {name!r}: give weights: PATH or pretrained: true, not both")
    if pretrained and library_of(name) is None:
        raise UsageError(f"model {name!r}: pretrained: true is for torchvision:NAME and "
                         "timm:NAME; a factory loads its own weights or takes weights: PATH, "
                         "and shipped zoo models are teacher sources zoo:NAME")
    if pretrained and library_of(name) == "timm":
        model = create(name, num_classes, in_channels, **options)
        fresh = _timm_pretrained(name, model.spec.get("num_classes"),
                                 model.spec.get("in_channels"), options)
        model.load_state_dict(fresh.state_dict())
        model.weights_info = {"pretrained": name}
        return model
    model = create_model(name, num_classes, in_channels, **options)
    model.weights_info = None
    if pretrained:
        report = load_into(model, pretrained_state(name), strict, f"published weights of {name}")
        model.weights_info = {"pretrained": name, **report}
    elif weights is not None:
        report = load_into(model, read_state_dict(weights), strict, f"weights {str(weights)!r}")
        model.weights_info = {"weights": str(weights), "sha256": file_sha256(weights), **report}
    return model

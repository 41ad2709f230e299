"""Take intermediate tensors by module path with forward hooks, so models are never edited.

Paths are ``named_modules`` names (``layer2``, ``layer2.1.relu``). Layer aliases
(``stage2``, ``stage-1``, ``embedding``, ``logits``) let configs name the same place
in any zoo model; ``resolve_layer_aliases`` turns them into paths.
"""

from __future__ import annotations

import difflib
import re
from functools import partial
from typing import Any

import torch
from torch import nn

from edgedistill.errors import UsageError

_SHOWN = 40
_STAGE = re.compile(r"stage(-?\d+)")


def valid_paths(model: nn.Module) -> list[str]:
    """Every hookable module path of ``model``, in definition order (the root excluded)."""
    return [name for name, _ in model.named_modules() if name]


def _missing(path: str, model: nn.Module, paths: list[str]) -> UsageError:
    close = difflib.get_close_matches(path, paths, n=5, cutoff=0.6)
    rest = [p for p in paths if p not in close]
    listed = close + rest[: max(0, _SHOWN - len(close))]
    more = f" ... and {len(paths) - len(listed)} more" if len(listed) < len(paths) else ""
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return UsageError(
        f"{type(model).__name__} has no module {path!r}{hint}; "
        f"valid paths: {', '.join(listed)}{more}"
    )


class FeatureExtractor:
    """Records the outputs of the modules at ``paths`` on every forward of ``model``.

    Use it as a context manager (hooks removed on exit) or keep it for a whole
    training run and call ``remove()`` at the end. ``features`` maps path -> tensor
    from the latest forward only (it is cleared when the model's forward starts);
    a module called several times in one forward keeps its last output. Tensors
    keep their autograd graph, so student features can carry a loss.
    """

    def __init__(self, model: nn.Module, paths: list[str]):
        modules = dict(model.named_modules())
        all_paths = valid_paths(model)
        for path in paths:
            if not path or path not in modules:
                raise _missing(path, model, all_paths)
        self.model = model
        self.paths = list(paths)
        self._features: dict[str, Any] = {}
        self._versions: dict[str, int] = {}
        self._handles = [model.register_forward_pre_hook(self._clear)]
        for path in dict.fromkeys(self.paths):
            self._handles.append(modules[path].register_forward_hook(partial(self._store, path)))

    def _clear(self, module: nn.Module, args: Any) -> None:
        self._features.clear()
        self._versions.clear()

    def _store(self, path: str, module: nn.Module, args: Any, output: Any) -> None:
        self._features[path] = output
        if isinstance(output, torch.Tensor) and not output.is_inference():
            self._versions[path] = output._version

    @property
    def features(self) -> dict[str, Any]:
        """Path -> output of the latest forward; fails if a later in-place op changed one.

        (Tensors made under ``torch.inference_mode`` have no version counter to check.)
        """
        for path, version in self._versions.items():
            if self._features[path]._version != version:
                raise UsageError(
                    f"the output of {path!r} was modified in place later in the forward pass, "
                    "so the hooked value is wrong; hook the next module instead"
                )
        return self._features

    def tensors(self) -> list[Any]:
        """The outputs in the order of ``paths``; fails if a module did not run."""
        features = self.features
        not_run = [p for p in self.paths if p not in features]
        if not_run:
            raise UsageError(
                f"modules {', '.join(not_run)} did not run in the last forward of "
                f"{type(self.model).__name__}; run the model first or hook modules it uses"
            )
        return [features[p] for p in self.paths]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._features.clear()
        self._versions.clear()

    def __enter__(self) -> FeatureExtractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _logits_path(model: nn.Module) -> str:
    names = dict(model.named_modules())
    for candidate in ("fc", "classifier"):
        if candidate in names:
            return candidate
    raise UsageError(f"{type(model).__name__} has neither 'fc' nor 'classifier' for 'logits'")


def resolve_layer_aliases(model: nn.Module, names: list[str]) -> list[str]:
    """Turn ``stageN`` / ``stage-N`` / ``embedding`` / ``logits`` into module paths.

    ``stage1`` is the first of ``model.stage_names``, ``stage-1`` the last;
    ``embedding`` is ``model.embedding_name`` (the pooled penultimate feature);
    ``logits`` is ``fc`` or ``classifier``. Other names pass through unchanged.
    """
    out = []
    for name in names:
        match = _STAGE.fullmatch(name)
        if match:
            out.append(_stage(model, name, int(match.group(1))))
        elif name == "embedding":
            if not hasattr(model, "embedding_name"):
                raise UsageError(
                    f"{type(model).__name__} has no embedding_name; name a module path instead"
                )
            out.append(model.embedding_name)
        elif name == "logits":
            out.append(_logits_path(model))
        else:
            out.append(name)
    return out


def _stage(model: nn.Module, alias: str, index: int) -> str:
    stages = getattr(model, "stage_names", None)
    if not stages:
        raise UsageError(f"{type(model).__name__} has no stage_names; name a module path instead")
    if index == 0 or abs(index) > len(stages):
        raise UsageError(
            f"{alias!r} is out of range: the model has {len(stages)} stages "
            f"(stage1..stage{len(stages)}, or stage-1 for the last): {', '.join(stages)}"
        )
    return stages[index - 1 if index > 0 else index]

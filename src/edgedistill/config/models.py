"""Model configs: zoo names, factories (``pkg.mod:fn``), torchvision:/timm: names with
weights, and the student (named or derived from the teacher)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    ValidationError,
    model_validator,
)

from edgedistill.config.base import Strict


class ModelConfig(Strict):
    """A model: a zoo name, ``torchvision:NAME`` / ``timm:NAME``, or a user's function
    (``factory: my_pkg.nets:make_model`` or ``path/to/file.py:make_model``), called with
    ``kwargs``; ``weights`` or ``pretrained`` give it trained weights (models/foreign.py)."""

    name: str | None = None
    factory: str | None = Field(None, description="package.module:function or file.py:function")
    kwargs: dict[str, Any] = {}
    weights: str | None = Field(None, description=".pt/.pth state dict, full checkpoint or "
                                ".safetensors; module./_orig_mod./model. prefixes are stripped")
    pretrained: bool = Field(False, description="torchvision:/timm: published weights "
                             "(downloaded; needs a network the first time)")
    strict: bool = Field(True, description="every weight must fit (false: load those that do)")

    @model_validator(mode="after")
    def _one_model(self) -> ModelConfig:
        check_model_fields(self, "name")
        return checked_kwargs(self)


def model_mapping(raw: dict) -> ModelConfig:
    """A mapping as ``ModelConfig``, its problems in one ``ValueError`` naming the keys (a
    union field would otherwise report every member's complaint)."""
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"])
            if e["type"] == "extra_forbidden":
                problems.append(f"unknown key {key!r}; allowed keys here: "
                                f"{', '.join(ModelConfig.model_fields)}")
            else:
                problems.append(f"{key + ': ' if key else ''}{e['msg'].removeprefix('Value error, ')}")
        raise ValueError("; ".join(problems)) from None


def check_model_fields(cfg: Any, others: str) -> None:
    """Shared by model and student configs: one way to name the model, a factory that
    looks like one, weights only with a model to load them into."""
    named = [k for k in (*others.split("|"), "factory") if getattr(cfg, k, None) is not None]
    if len(named) != 1:
        raise ValueError(f"give exactly one of {' or '.join(others.split('|'))} or factory")
    if cfg.factory is not None and ":" not in cfg.factory:
        raise ValueError(f"factory {cfg.factory!r} must be 'package.module:function' or "
                         "'path/to/file.py:function'")
    if cfg.weights is not None and cfg.pretrained:
        raise ValueError("give weights or pretrained: true, not both")


def checked_kwargs(cfg: Any) -> Any:
    """``cfg`` with a zoo model's ``kwargs`` checked against its factory and converted
    (torch not imported: config/builtins.py reads the zoo's files)."""
    if cfg.name is not None:
        from edgedistill.config.builtins import check_model

        cfg.kwargs = check_model(cfg.name, cfg.kwargs)
    return cfg


class StudentConfig(Strict):
    name: str | None = None
    factory: str | None = Field(None, description="package.module:function or file.py:function")
    kwargs: dict[str, Any] = {}
    weights: str | None = Field(None, description="initial weights (see ModelConfig)")
    pretrained: bool = False
    strict: bool = True
    derive: Literal["shallower", "narrower", "both"] | None = None
    depth: int | None = Field(None, gt=0)
    width: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_way(self) -> StudentConfig:
        try:
            check_model_fields(self, "name|derive")
        except ValueError as err:
            raise ValueError(str(err).replace("give exactly one of name or derive or factory",
                                              "give exactly one of student.name, student.factory "
                                              "or student.derive")) from None
        if self.derive is not None and (self.weights is not None or self.pretrained):
            raise ValueError("a derived student starts from fresh weights; weights and "
                             "pretrained go with student.name or student.factory")
        return checked_kwargs(self)

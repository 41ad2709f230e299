"""Transfer techniques as lists of loss terms: presets, any registered loss by name, and
``a+b`` combinations.

Presets follow each method's reference recipe (weights from the papers or Tian et al.'s
CRD benchmark; KD at T=4 with CE 0.1 / KD 0.9 as in mdistiller). The hint techniques
follow the study's ``hint`` settings (``HintConfig``): by default the FitNets two-stage
recipe on the middle stage (``stage2``), a layer every zoo ResNet has, so one preset fits
every student shape. A registered loss
used by name gets CE 1.0 plus the loss at its default weight on its usual layers. A
combination keeps one CE term (the one of smallest weight among its parts, with its
start epoch) and every other term of every part.
"""

from __future__ import annotations

from typing import Callable, Protocol

from pydantic import Field

from edgedistill.config import LossConfig, Strict, TrainConfig
from edgedistill.errors import UsageError


class TechniqueConfig(Strict):
    """A transfer technique spelled out as the loss terms of its cells."""

    label: str
    losses: list[LossConfig] = Field(..., min_length=1)


class HintConfig(Strict):
    """How the hint techniques (``fitnet``, ``hint+kd``) transfer intermediate layers.

    Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015, train in two stages:
    first the student up to its guided layer regresses the teacher's hint layer (the
    middle of each network; the stage-1 objective is the plain L2 loss, so ``weight`` 1),
    then the whole student learns from the teacher's soft labels. ``fitnet`` is that hint
    stage followed by cross-entropy alone (intermediate transfer only); ``hint+kd`` is the
    paper's recipe, the hint stage followed by KD (intermediate then last layer).
    ``stage_epochs: null`` takes a fifth of the schedule (at least one epoch).
    ``joint_weight``: instead of stages, train the hint together with the other terms for
    the whole run at this weight (100 in Tian et al.'s CRD benchmark and mdistiller).
    """

    layers: list[str] = Field(["stage2"], min_length=1)
    stage_epochs: int | None = Field(None, ge=1)
    weight: float = Field(1.0, gt=0)
    joint_weight: float | None = Field(None, gt=0)

    def epochs(self, total: int) -> int:
        n = self.stage_epochs if self.stage_epochs is not None else max(1, round(total / 5))
        if n >= total:
            raise UsageError(f"hint.stage_epochs ({n}) must be less than train.epochs ({total}), "
                             "so that the hinted student trains on after its hint stage")
        return n


class StudySettings(Protocol):
    """What resolving techniques reads of a ``StudyConfig`` (``config/study.py``, which
    imports this module and validates its techniques with it)."""

    techniques: list[str | TechniqueConfig]
    hint: HintConfig
    train: TrainConfig


HINT = ["stage-1"]
STAGES = ["stage1", "stage2", "stage3"]
USUAL_LAYERS = {
    "at": STAGES, "fsp": ["stage1", "stage2", "stage2", "stage3"],
    "reviewkd": [*STAGES, "embedding"], "crd": ["embedding"], "cc": ["embedding"],
    "pkt": ["embedding"], "rkd": ["embedding"],
}


def _ce(weight: float) -> dict:
    return {"name": "ce", "weight": weight}


def _layers(layers: list[str]) -> dict:
    return {"student_layers": list(layers), "teacher_layers": list(layers)}


def _warmup(epochs: int) -> int:
    """DKD and ReviewKD warm up over 20 of their 240 epochs; the study keeps that 1/12 ratio."""
    return max(1, round(epochs / 12))


def _dkd(epochs: int) -> list[dict]:
    return [_ce(1.0), {"name": "dkd", "params": {"alpha": 1.0, "beta": 8.0, "temperature": 4.0,
                                                  "warmup_epochs": _warmup(epochs)}}]


def _reviewkd(epochs: int) -> list[dict]:
    return [_ce(1.0), {"name": "reviewkd", **_layers(USUAL_LAYERS["reviewkd"]),
                       "params": {"warmup_epochs": _warmup(epochs)}}]


def _kd(weight: float, start: int = 0) -> dict:
    return {"name": "kd", "weight": weight, "params": {"temperature": 4.0, "start_epoch": start}}


def _hinted(hint: HintConfig, epochs: int, then: list[dict]) -> list[dict]:
    """ce, the hint, then the other ``then`` terms: in two stages (FitNets) or jointly."""
    if hint.joint_weight is not None:
        return [then[0], {"name": "fitnet", "weight": hint.joint_weight, **_layers(hint.layers)},
                *then[1:]]
    stage = hint.epochs(epochs)
    delayed = [{**t, "params": {**t.get("params", {}), "start_epoch": stage}} for t in then]
    return [delayed[0], {"name": "fitnet", "weight": hint.weight, **_layers(hint.layers),
                         "params": {"stage_epochs": stage}}, *delayed[1:]]


PRESETS: dict[str, Callable[[int, HintConfig], list[dict]]] = {
    "none": lambda epochs, hint: [_ce(1.0)],
    "kd": lambda epochs, hint: [_ce(0.1), _kd(0.9)],
    "fitnet": lambda epochs, hint: _hinted(hint, epochs, [_ce(1.0)]),
    "hint+kd": lambda epochs, hint: _hinted(hint, epochs, [_ce(0.1), _kd(0.9)]),
    "at": lambda epochs, hint: [_ce(1.0), {"name": "at", "weight": 1000.0, **_layers(STAGES)}],
    "dkd": lambda epochs, hint: _dkd(epochs),
    "reviewkd": lambda epochs, hint: _reviewkd(epochs),
}


def _single(name: str, epochs: int, hint: HintConfig) -> list[dict] | None:
    from edgedistill.losses import LOSSES

    if name in PRESETS:
        return PRESETS[name](epochs, hint)
    if name in LOSSES and name != "ce":
        term: dict = {"name": name}
        if LOSSES.get(name).needs_features:
            term.update(_layers(USUAL_LAYERS.get(name, HINT)))
        return [_ce(1.0), term]
    return None


def _split(name: str, epochs: int, hint: HintConfig) -> list[list[dict]] | None:
    """Split ``a+b+c`` into known parts, longest names first (``hint+kd`` is one name)."""
    if not name:
        return []
    parts = name.split("+")
    for i in range(len(parts), 0, -1):
        head = _single("+".join(parts[:i]), epochs, hint)
        if head is not None:
            rest = _split("+".join(parts[i:]), epochs, hint)
            if rest is not None:
                return [head, *rest]
    return None


def expand_name(name: str, epochs: int, hint: HintConfig | None = None) -> list[LossConfig]:
    """The loss terms of a technique given by name; ``UsageError`` names the choices."""
    from edgedistill.losses import LOSSES

    groups = _split(name, epochs, hint or HintConfig())
    if groups is None:
        raise UsageError(
            f"techniques: {name!r} is not a preset ({', '.join(PRESETS)}), a registered loss "
            f"({', '.join(n for n in LOSSES.names() if n != 'ce')}) or a '+' combination of "
            "them; or spell it out as {label: NAME, losses: [...]}")
    if len(groups) == 1:
        return [LossConfig(**t) for t in groups[0]]
    ce = min((t for g in groups for t in g if t["name"] == "ce"), key=lambda t: t["weight"])
    terms = [t for g in groups for t in g if t["name"] != "ce"]
    names = [t["name"] for t in terms]
    if len(set(names)) != len(names):
        raise UsageError(f"techniques: {name!r} repeats a loss term ({names}); spell it out "
                         "with `losses` and give the repeated terms distinct labels")
    return [LossConfig(**ce), *(LossConfig(**t) for t in terms)]


def resolve_techniques(cfg: StudySettings) -> list[TechniqueConfig]:
    """Every technique of the study as a label plus its loss terms, checked by name."""
    from edgedistill.losses import LOSSES

    out = []
    for i, item in enumerate(cfg.techniques):
        if isinstance(item, str):
            out.append(TechniqueConfig(label=item, losses=expand_name(item, cfg.train.epochs,
                                                                        cfg.hint)))
            continue
        for term in item.losses:
            if term.name not in LOSSES:
                raise UsageError(f"techniques[{i}] ({item.label}): unknown loss {term.name!r}; "
                                 f"choose one of: {', '.join(LOSSES.names())}")
        out.append(item)
    none = next(t for t in out if t.label == "none")
    if any(term.name != "ce" for term in none.losses):
        raise UsageError("techniques: 'none' is the no-teacher baseline and may hold only ce terms")
    return out

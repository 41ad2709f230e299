"""Student search: derive candidates from the teacher, predict their cost, keep those that fit.

Candidates are the teacher's family with fewer blocks per stage and narrower layers
(every combination of per-stage depth and width multiplier), plus the small students
of the KD literature that the zoo registers. Each is counted for parameters, storage at
the profile's precision, FLOPs, peak activation memory and predicted latency: from its
spec alone where ``design/analytic.py`` describes its family (microseconds), else by
building it without weights (on the meta device) and tracing it (``design/trace.py``). The most capable candidate that fits every
budget is chosen: FLOPs are the capacity proxy (accuracy is unknown before training),
ties go to fewer parameters. Every rejected candidate keeps the reasons it failed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import product

import torch
from torch import nn

from edgedistill.design.analytic import structure
from edgedistill.design.profiles import DeviceProfile
from edgedistill.design.trace import Trace, trace
from edgedistill.design.units import fmt_bytes
from edgedistill.errors import UsageError
from edgedistill.models import MODELS, count_params, create_model, student_name
from edgedistill.models.analysis import BYTES_PER_PARAM
from edgedistill.models.zoo import family_of, model_options, resolved_options

DEFAULT_WIDTHS = (0.25, 0.375, 0.5, 0.75, 1.0)
ZOO_STUDENTS = ("resnet8", "resnet14", "resnet20", "resnet32", "resnet8x4", "wrn_16_1",
                "wrn_16_2", "wrn_40_1", "mobilenetv2_tiny")


@dataclass
class Candidate:
    """One student architecture, its predicted cost, and why it fails (empty if it fits)."""

    name: str
    spec: dict
    origin: str
    params: int = 0
    storage_bytes: int = 0
    flops: int = 0
    activation_bytes: int = 0
    latency_ms: float | None = None
    measured_ms: float | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not self.reasons

    def row(self) -> dict:
        return {"student": self.name, "origin": self.origin, "params": self.params,
                "storage": fmt_bytes(self.storage_bytes), "MFLOPs": self.flops / 1e6,
                "activations": fmt_bytes(self.activation_bytes),
                "predicted ms": "-" if self.latency_ms is None else round(self.latency_ms, 3)}


@dataclass
class Design:
    """A search's outcome: every candidate, the chosen one (None if none fits), the front."""

    teacher: str
    input_shape: tuple[int, int, int]
    profile: DeviceProfile
    candidates: list[Candidate]
    chosen: Candidate | None
    pareto: list[Candidate]

    def to_json(self) -> dict:
        def dump(c: Candidate) -> dict:
            return {**c.__dict__, "fits": c.fits}

        return {"teacher": self.teacher, "input_shape": list(self.input_shape),
                "profile": self.profile.model_dump(mode="json"),
                "chosen": None if self.chosen is None else dump(self.chosen),
                "pareto": [c.name for c in self.pareto],
                "candidates": [dump(c) for c in self.candidates]}


def _depth_choices(n: int) -> list[int]:
    """1, about a third, about two thirds and all of a stage's ``n`` blocks."""
    return sorted({1, max(1, round(n / 3)), max(1, round(2 * n / 3)), n})


def _canonical(spec: dict) -> dict:
    """Uniform blocks per stage become the family's standard depth (resnet20, not -b3_3_3)."""
    blocks = spec.get("blocks")
    family = family_of(spec["name"])
    if not blocks or len(set(blocks)) != 1 or not family.can_change_depth:
        return spec
    plain = {k: v for k, v in spec.items() if k != "blocks"}
    try:
        return family.with_depth(plain, family.depth(spec))
    except UsageError:
        return spec


def family_specs(teacher: nn.Module, widths: tuple[float, ...]) -> list[dict]:
    """Per-stage depths x width multipliers of the teacher's family (the teacher included)."""
    spec = dict(teacher.spec)
    family = family_of(spec["name"])
    stages = [teacher.get_submodule(s) for s in getattr(teacher, "stage_names", [])]
    if "blocks" in model_options(spec["name"]) and stages and all(
            isinstance(s, nn.Sequential) for s in stages):
        choices = [_depth_choices(len(s)) for s in stages]
        variants = [_canonical({**spec, "blocks": list(c)}) for c in product(*choices)]
    elif family.can_change_depth:
        current = family.depth(spec)
        variants = [family.with_depth(spec, d) for d in family.depths(spec) if d < current]
        variants.append(spec)
    else:
        variants = [spec]
    if family.width_key is None:
        return variants
    base = resolved_options(spec)[family.width_key]
    return [{**v, family.width_key: round(base * w, 6)} for v in variants for w in widths]


def zoo_specs(teacher: nn.Module) -> list[dict]:
    """The literature's small students, built for the teacher's classes and input channels."""
    fixed = {k: teacher.spec[k] for k in ("num_classes", "in_channels") if k in teacher.spec}
    return [{"name": n, **fixed} for n in ZOO_STUDENTS if n in MODELS.names()]


@lru_cache(maxsize=4096)
def _structure(spec_json: str, input_shape: tuple[int, ...]) -> tuple:
    """(params, ops, peak activation elements) of one spec, counted once."""
    spec = json.loads(spec_json)
    counted = structure(spec, input_shape)
    if counted is None:
        counted = traced(spec, input_shape)
    params, result = counted
    return params, result.ops, result.peak_activation_elements


def ops_of(spec: dict, input_shape: tuple[int, ...]) -> tuple:
    """The ops of ``spec`` at ``(N, C, H, W)``, as the search counts them (cached)."""
    return _structure(json.dumps(spec, sort_keys=True), tuple(input_shape))[1]


def traced(spec: dict, input_shape: tuple[int, ...]) -> tuple[int, Trace]:
    """Build ``spec`` on the meta device (shapes only: no weights to allocate and
    initialize) and trace it; a model that cannot run there is built and traced on the
    CPU, whose error, if any, is the one reported."""
    try:
        with torch.device("meta"):
            model = create_model(**spec)
        return count_params(model), trace(model, input_shape)
    except (RuntimeError, NotImplementedError):
        model = create_model(**spec)
        return count_params(model), trace(model, input_shape)


def analyze(spec: dict, origin: str, input_shape: tuple[int, int, int],
            profile: DeviceProfile) -> Candidate:
    """Predict one candidate's cost on ``profile`` and check it against every budget."""
    name = student_name(spec)
    try:
        params, ops, peak = _structure(json.dumps(spec, sort_keys=True),
                                       (profile.batch, *input_shape))
    except (RuntimeError, ValueError) as err:
        reason = f"does not run on a {'x'.join(map(str, input_shape))} input: " \
                 f"{str(err).splitlines()[0]}"
        return Candidate(name, spec, origin, reasons=[reason])
    width = BYTES_PER_PARAM[profile.precision]
    c = Candidate(name, spec, origin, params=params, storage_bytes=params * width,
                  flops=sum(op.flops for op in ops) // profile.batch,
                  activation_bytes=peak * width, latency_ms=profile.predict_ms(list(ops)))
    c.reasons = budget_failures(c, profile)
    return c


def budget_failures(c: Candidate, profile: DeviceProfile) -> list[str]:
    out = []
    if profile.storage_bytes and c.storage_bytes > profile.storage_bytes:
        out.append(f"storage {fmt_bytes(c.storage_bytes)} > {fmt_bytes(profile.storage_bytes)}")
    if profile.max_time_ms and c.latency_ms is not None and c.latency_ms > profile.max_time_ms:
        out.append(f"latency {c.latency_ms:.3g} ms > {profile.max_time_ms:g} ms")
    if profile.activation_bytes and c.activation_bytes > profile.activation_bytes:
        out.append(f"activations {fmt_bytes(c.activation_bytes)} > "
                   f"{fmt_bytes(profile.activation_bytes)}")
    return out


def pareto_front(candidates: list[Candidate]) -> list[Candidate]:
    """Fitting candidates no other fitting one beats on FLOPs, storage and latency at once."""
    fit = [c for c in candidates if c.fits]

    def cost(c: Candidate) -> tuple:
        return (-c.flops, c.storage_bytes, c.latency_ms or 0.0)

    def dominates(a: Candidate, b: Candidate) -> bool:
        return all(x <= y for x, y in zip(cost(a), cost(b), strict=True)) and cost(a) != cost(b)

    front = [c for c in fit if not any(dominates(o, c) for o in fit)]
    return sorted(front, key=lambda c: -c.flops)


def search(teacher: nn.Module, teacher_name: str, input_shape: tuple[int, int, int],
           profile: DeviceProfile, widths: tuple[float, ...] = DEFAULT_WIDTHS,
           zoo: bool = True) -> Design:
    if not (profile.storage_bytes or profile.max_time_ms or profile.activation_bytes):
        raise UsageError("no budget to design for: give --storage, --max-time or "
                         "--activation-memory, or a --profile that sets one")
    if any(not 0 < w <= 1 for w in widths):
        raise UsageError(f"width multipliers must be in (0, 1], got {list(widths)}")
    teacher_spec = dict(teacher.spec)
    seen: dict[str, Candidate] = {}
    for spec in family_specs(teacher, widths):
        c = analyze(spec, "family", input_shape, profile)
        if spec == teacher_spec or c.name == student_name(teacher_spec):
            c.origin = "teacher's architecture"
        seen.setdefault(c.name, c)
    teacher_params = count_params(teacher)
    for spec in zoo_specs(teacher) if zoo else []:
        c = analyze(spec, "zoo", input_shape, profile)
        if c.name not in seen and (c.params < teacher_params or not c.params):
            seen[c.name] = c
    candidates = sorted(seen.values(), key=lambda c: (-c.flops, c.params))
    fitting = [c for c in candidates if c.fits]
    chosen = max(fitting, key=lambda c: (c.flops, -c.params)) if fitting else None
    return Design(teacher_name, input_shape, profile, candidates, chosen,
                  pareto_front(candidates))


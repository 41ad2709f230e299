"""Derive a student spec from a teacher spec: fewer blocks, fewer channels, or both.

Students stay in the teacher's family so hints and stage aliases line up. The
default depth is the family's standard depth closest to a third of the teacher's,
among those below it (ties go to the shallower); this reproduces the pairs used
across the KD literature (CRD, mdistiller): resnet56 -> resnet20, resnet110 -> resnet32,
resnet32x4 -> resnet8x4, wrn_40_2 -> wrn_16_2. The default width halves the channels.
``torchvision:`` ResNets, MobileNetV2 and DenseNets derive too (models/torchvision_hub.py);
a user's factory cannot (its structure is unknown), and the error says so.
"""

from __future__ import annotations

from edgedistill.errors import UsageError
from edgedistill.models.zoo import check_spec, families, family_of, resolved_options

MODES = ("shallower", "narrower", "both")
DEFAULT_WIDTH = 0.5


def derive_student(teacher_spec: dict, mode: str, *, depth: int | None = None,
                   width: float | None = None) -> dict:
    """Return the spec of a student; ``create_model(**spec)`` builds it.

    ``depth`` picks the student's depth exactly (shallower/both); ``width`` is the
    multiplier applied to the teacher's channels, in (0, 1) (narrower/both).
    """
    if mode not in MODES:
        raise UsageError(f"unknown student mode {mode!r}; choose one of: {', '.join(MODES)}")
    check_spec(teacher_spec)
    if depth is not None and mode == "narrower":
        raise UsageError("depth applies to shallower and both students, not narrower")
    if width is not None and mode == "shallower":
        raise UsageError("width applies to narrower and both students, not shallower")
    spec = dict(teacher_spec)
    if mode in ("shallower", "both"):
        spec = _shallower(spec, depth)
    if mode in ("narrower", "both"):
        spec = _narrower(spec, DEFAULT_WIDTH if width is None else width)
    return spec


def student_name(spec: dict) -> str:
    """The human name of a spec: ``resnet20``, ``resnet56-w0.5``, ``resnet20-w0.5``."""
    check_spec(spec)
    return family_of(spec["name"]).display_name(spec)


def _shallower(spec: dict, depth: int | None) -> dict:
    family = family_of(spec["name"])
    if not family.can_change_depth:
        raise UsageError(_unsupported(spec["name"], "shallower"))
    current = family.depth(spec)
    if depth is None:
        below = [d for d in family.depths(spec) if d < current]
        if not below:
            raise UsageError(
                f"{student_name(spec)} is already the shallowest standard depth of its family; "
                "pass depth= or derive a narrower student"
            )
        depth = min(below, key=lambda d: (abs(d - current / 3), d))
    elif isinstance(depth, bool) or not isinstance(depth, int) or not 0 < depth < current:
        raise UsageError(
            f"a shallower student of {student_name(spec)} needs an integer depth below "
            f"{current}, got {depth!r}"
        )
    return family.with_depth(spec, depth)


def _narrower(spec: dict, width: float) -> dict:
    family = family_of(spec["name"])
    if family.width_key is None:
        raise UsageError(_unsupported(spec["name"], "narrower"))
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width < 1:
        raise UsageError(f"a narrower student needs a width multiplier in (0, 1), got {width!r}")
    if hasattr(family, "narrow"):  # e.g. DenseNet: an integer growth rate
        return family.narrow(spec, width)
    current = resolved_options(spec)[family.width_key]
    return {**spec, family.width_key: round(current * width, 6)}


def _unsupported(name: str, mode: str) -> str:
    if family_of(name).name == "factory":
        return (f"no {mode} student can be derived from factory model {name!r}: its structure "
                "(blocks, widths) is unknown to edgedistill; give the student as student.name "
                "or student.factory instead")
    ok = []
    for family_name, names in families().items():
        family = family_of(names[0])
        if family.can_change_depth if mode == "shallower" else family.width_key is not None:
            ok.append(f"{family_name} ({', '.join(names)})")
    ok.append("torchvision:mobilenet_v2, torchvision:densenetNNN"
              + (", torchvision:resnetNN" if mode == "shallower" else ""))
    return (
        f"{mode} students cannot be derived from {name!r} ({family_of(name).name} family); "
        f"{mode} works for: {'; '.join(ok)}"
    )

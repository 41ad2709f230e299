"""Human units for device budgets: ``2MB``, ``512KiB``, ``15ms``, ``5GFLOPS``, ``1.2TFLOPS``.

Byte sizes follow storage labels: SI prefixes (kB, MB, GB) are powers of 1000 and IEC
prefixes (KiB, MiB, GiB) powers of 1024. A lower-case ``b`` means bits on every label,
so ``2Mb`` is refused rather than guessed. A bare number is bytes, milliseconds or
FLOP/s. Every error names the option and shows valid examples.
"""

from __future__ import annotations

import math
import re

from edgedistill.errors import UsageError

_NUMBER = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-zµ/]*)\s*$")
_SI = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15}
_IEC = {"ki": 1024.0, "mi": 1024.0 ** 2, "gi": 1024.0 ** 3, "ti": 1024.0 ** 4}
_TIME_MS = {"": 1.0, "ms": 1.0, "s": 1e3, "us": 1e-3, "µs": 1e-3, "ns": 1e-6}


class UnitError(UsageError, ValueError):
    """A value with a unit that cannot be read; a ValueError too, so pydantic reports it
    against the offending YAML key."""


def _lead(what: str) -> str:
    """Errors start with the option's name (``--storage: ...``); pydantic adds the key itself."""
    return f"{what}: " if what else ""


def _split(text, lead: str, examples: str) -> tuple[float, str]:
    if isinstance(text, bool):
        raise UnitError(f"{lead}expected a value like {examples}, got {text!r}")
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        match = _NUMBER.match(str(text))
        if not match:
            raise UnitError(f"{lead}cannot read {text!r}; expected a value like {examples}")
        value, unit = float(match.group(1)), match.group(2)
    if not math.isfinite(value) or value <= 0:
        raise UnitError(f"{lead}must be a positive value like {examples}, got {text!r}")
    return value, unit


def parse_bytes(text, what: str = "size") -> int:
    """``2MB`` -> 2_000_000, ``512KiB`` -> 524_288, ``800000`` -> 800_000."""
    examples = "2MB, 512KiB, 1.5GB or 800000 (bytes)"
    lead = _lead(what)
    value, unit = _split(text, lead, examples)
    if unit and unit[-1] == "b":
        raise UnitError(f"{lead}{text!r} is in bits (lower-case b); write bytes with B, "
                        f"e.g. {examples}")
    prefix = unit[:-1].lower() if unit.endswith("B") else unit.lower()
    scale = _IEC.get(prefix, _SI.get(prefix))
    if scale is None:
        raise UnitError(f"{lead}unknown unit in {text!r}; expected a value like {examples}")
    return int(round(value * scale))


def parse_ms(text, what: str = "time") -> float:
    """``15ms`` -> 15.0, ``0.5s`` -> 500.0, ``800us`` -> 0.8; a bare number is ms."""
    examples = "15ms, 0.5s, 800us or 15 (ms)"
    lead = _lead(what)
    value, unit = _split(text, lead, examples)
    scale = _TIME_MS.get(unit.lower())
    if scale is None:
        raise UnitError(f"{lead}unknown unit in {text!r}; expected a value like {examples}")
    return value * scale


def parse_flops(text, what: str = "speed") -> float:
    """``5GFLOPS`` / ``5 GFLOP/s`` -> 5e9 FLOP/s; ``1.2TFLOPS`` -> 1.2e12; a bare number is FLOP/s."""
    examples = "5GFLOPS, 800MFLOP/s, 1.2TFLOPS or 5e9 (FLOP/s)"
    lead = _lead(what)
    value, unit = _split(text, lead, examples)
    lowered = unit.lower()
    for suffix in ("flop/s", "flops"):
        if lowered.endswith(suffix):
            lowered = lowered[: -len(suffix)]
            break
    else:
        if lowered:
            raise UnitError(f"{lead}{text!r} is not a speed; expected a value like {examples}")
    if lowered not in _SI:
        raise UnitError(f"{lead}unknown prefix in {text!r}; expected a value like {examples}")
    return value * _SI[lowered]


def fmt_bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def fmt_flops(n: float, per_s: bool = False) -> str:
    """A FLOP count (``62.0 MFLOPs``) or, with ``per_s``, a speed (``5.00 GFLOP/s``)."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {prefix}FLOP{'/s' if per_s else 's'}"
    return f"{n:.0f} FLOP{'/s' if per_s else 's'}"

"""Device-aware student design: device profiles and budgets in human units, a latency
model fitted on ONNX Runtime micro-benchmarks, the student search, and the training and
halting reports that follow it. ``design_app`` (in ``design/cli.py``) is the CLI.

The names below load on first use, so mounting the CLI does not import torch and ONNX
Runtime on every ``edgedistill --help``. The ``search`` and ``trace`` functions live in
the submodules of the same names (``from edgedistill.design.search import search``).
"""

from importlib import import_module

_EXPORTS = {
    "BUILTIN": "profiles", "DeviceProfile": "profiles", "load_profile": "profiles",
    "save_profile": "profiles", "LatencyModel": "latency", "profile_latency": "latency",
    "run_design": "run", "Candidate": "search", "Design": "search", "Op": "trace",
    "Trace": "trace", "parse_bytes": "units",
    "parse_flops": "units", "parse_ms": "units", "run_halting_report": "halting_report",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"edgedistill.design.{_EXPORTS[name]}"), name)

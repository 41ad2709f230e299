"""Knowledge-transfer study: student shapes x transfer techniques x seeds on one teacher,
compared by accuracy, convergence speed and gain over the same student trained alone.

``run_study(config, out, resume)`` runs or resumes a study YAML; ``write_report``
rebuilds the report of a study folder; ``PRESETS`` lists the named techniques.

The names below load on first use, so mounting the ``study`` command does not import
torch and matplotlib on every ``edgedistill`` call.
"""

from importlib import import_module

_EXPORTS = {
    "StudyConfig": "edgedistill.config.study", "load_study": "edgedistill.config.study", "CellsFailed": "run", "run_study": "run",
    "PRESETS": "techniques", "expand_name": "techniques", "resolve_techniques": "techniques",
    "write_report": "report",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _EXPORTS[name]
    return getattr(import_module(module if "." in module else f"edgedistill.study.{module}"),
                   name)

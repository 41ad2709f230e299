"""The built-in losses' settings read from their files (no torch) are exactly those their
imported classes' signatures give, every parameter is typed, and a file the reader
cannot follow is imported instead."""

import ast
import inspect
import subprocess
import sys

import pytest

from edgedistill.losses import LOSSES
from edgedistill.losses.catalog import _params, builtins, signature_stub
from edgedistill.registry import settings_from_signature

NAMES = sorted(builtins())


def fields(model) -> dict:
    """Names, types, bounds and defaults, as the config schema sees them."""
    return model.model_json_schema()


def test_checking_every_builtin_loss_does_not_import_torch():
    code = ("import sys; from edgedistill.losses import LOSSES\n"
            "for n in LOSSES.names(): LOSSES.validate_settings(n, {}, 'params')\n"
            "assert len(LOSSES.names()) > 15 and 'torch' not in sys.modules, sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_every_registered_file_term_is_in_the_catalog():
    LOSSES.load_all()
    builtin = {n for n in LOSSES._items if LOSSES.origin(n).startswith("edgedistill.losses.")}
    assert builtin == set(NAMES)
    assert all(LOSSES.origin(n) == builtins()[n].module for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_read_settings_equal_the_imported_signature(name):
    entry = builtins()[name]
    assert entry.params is not None, f"{entry.module}: the catalog cannot read it"
    read = settings_from_signature(signature_stub(entry), LOSSES.skip, title=name)
    real = settings_from_signature(LOSSES.get(name), LOSSES.skip, title=name)
    assert fields(read) == fields(real)


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_is_annotated(name):
    params = inspect.signature(LOSSES.get(name).__init__, eval_str=True).parameters
    untyped = [p for p in params if p != "self" and params[p].annotation is inspect.Parameter.empty]
    assert not untyped, f"{name}: annotate {untyped} so its settings are typed"


def test_a_default_that_is_not_a_literal_is_left_to_the_import():
    init = ast.parse("def __init__(self, a: float = 1.0, b: int = SIZE): pass").body[0]
    assert _params(init.args) is None
    init = ast.parse("def __init__(self, a: float = 1.0, *, b: list[str] | None = None): pass")
    params = _params(init.body[0].args)
    assert [(p.name, p.default, p.kind.name) for p in params] == [
        ("a", 1.0, "POSITIONAL_OR_KEYWORD"), ("b", None, "KEYWORD_ONLY")]
    assert params[1].annotation == list[str] | None

"""docs/PLUGINS.md is code: every registry and file it names exists, and its loss example
loads as a plugin from a file and computes the loss it describes."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from edgedistill.losses.base import LossInputs
from edgedistill.registry import Registry
from tests.conftest import ROOT
from tests.losses.helpers import forgetting_plugin_losses

DOC = (ROOT / "docs" / "PLUGINS.md").read_text()


def table_rows() -> list[list[str]]:
    rows = [line.split("|")[1:-1] for line in DOC.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in row] for row in rows[1:] if not set(row[0]) <= {"-", " "}]


def test_every_registry_in_the_table_is_a_registry():
    names = [re.search(r"`([\w.]+)`", row[1]).group(1) for row in table_rows()]
    assert len(names) >= 8
    for dotted in names:
        module, attr = dotted.rsplit(".", 1)
        registry = getattr(importlib.import_module(f"edgedistill.{module}"), attr)
        assert isinstance(registry, Registry), dotted
        assert registry.names(), f"{dotted} has no entries"


def test_every_file_the_doc_names_exists():
    src = ROOT / "src" / "edgedistill"
    paths = set(re.findall(r"`((?:[a-z_]+/)+[a-z_]+\.py)`", DOC))
    assert len(paths) >= 10
    missing = [p for p in paths if not ((src / p).is_file() or (ROOT / p).is_file())]
    assert not missing, missing


def test_the_loss_example_is_a_working_plugin(tmp_path: Path):
    from edgedistill.losses import LOSSES, build_loss
    from edgedistill.plugins import load_plugins

    code = re.search(r"```python\n(.*?)```", DOC, re.S).group(1)
    (tmp_path / "soft_l2_doc.py").write_text(code)
    with forgetting_plugin_losses():
        load_plugins(["soft_l2_doc.py"], base=tmp_path)
        assert "soft_l2" in LOSSES
        settings = LOSSES.validate_settings("soft_l2", {"temperature": 2}, "params")
        assert settings.temperature == 2.0
        term = build_loss("soft_l2", temperature=2.0)
        s, t = torch.randn(4, 10), torch.randn(4, 10)
        inputs = LossInputs(s, t, [], [], torch.zeros(4, dtype=torch.long), torch.arange(4))
        want = F.mse_loss(F.softmax(s / 2, 1), F.softmax(t / 2, 1))
        assert torch.allclose(term(inputs), want)

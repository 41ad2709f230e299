"""User plugins: a loss in the user's own module (a .py file or a dotted module on the
path, or an installed entry point) is imported from a config's ``plugins:``, validated
like a built-in, trained with by the real ``edgedistill distill`` and listed by
``edgedistill losses``; what cannot be imported is one line naming it and the fix."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from edgedistill.config import DistillExperiment, load_config
from edgedistill.errors import UsageError
from edgedistill.losses import LOSSES
from edgedistill.plugins import load_plugins
from tests.conftest import CLI, run_cli, timed_cli
from tests.losses.helpers import forgetting_plugin_losses

PLUGIN = '''
"""A user's loss: mean squared error between student and teacher logits (Ba and Caruana, 2014)."""
import torch.nn.functional as F

from edgedistill.losses import LossTerm
from edgedistill.losses.registry import register


@register("{name}")
class LogitMSE(LossTerm):
    """MSE between logits (Ba and Caruana, NeurIPS 2014); default_weight 1, as there."""

    default_weight = 1.0

    def __init__(self, student_layers: list[str] | None = None,
                 teacher_layers: list[str] | None = None, scale: float = 1.0):
        super().__init__(student_layers, teacher_layers)
        self.scale = scale

    def forward(self, inputs):
        return self.scale * F.mse_loss(inputs.student_logits, inputs.teacher_logits)
'''


@pytest.fixture(autouse=True)
def _forget_plugin_losses():
    with forgetting_plugin_losses():
        yield


def write_plugin(folder: Path, filename: str, loss: str) -> Path:
    path = folder / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PLUGIN.format(name=loss))
    return path


def distill_raw(losses: list[dict], plugins: list[str], root: str | None = None) -> dict:
    return {
        "name": "plug", "seed": 0, "plugins": plugins,
        "data": {"dataset": "fashion_mnist", "limit_train": 256, "limit_test": 128,
                 "batch_size": 64, "augment": {"enabled": False}, "root": root},
        "teacher": {"source": "zoo:resnet20-fashion_mnist"},
        "student": {"name": "resnet8", "kwargs": {"width": 0.5}},
        "losses": losses,
        "train": {"epochs": 1, "threads": 1, "progress": False,
                  "optimizer": {"name": "adam", "lr": 0.003, "weight_decay": 0.0}},
    }


def test_a_file_plugin_registers_once_and_validates_like_a_builtin(tmp_path):
    name = f"mse_{tmp_path.name}"
    write_plugin(tmp_path / "cfgdir", "my_losses.py", name)
    cfg_path = tmp_path / "cfgdir" / "exp.yaml"
    raw = distill_raw([{"name": "ce"}, {"name": name, "params": {"scale": "2"}}],
                      ["my_losses.py"])
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = load_config(cfg_path, DistillExperiment)  # found next to the config, not in cwd
    assert cfg.losses[1].params == {"scale": 2.0}
    assert cfg.plugins == [str((tmp_path / "cfgdir" / "my_losses.py").resolve())]
    module = LOSSES.get(name).__module__
    # again (a resumed run's saved config, a second experiment): the same module, no error
    again = DistillExperiment.model_validate(cfg.model_dump(mode="json"))
    assert again.plugins == cfg.plugins and LOSSES.get(name).__module__ == module
    assert load_plugins(cfg.plugins)[0] is sys.modules[module]
    raw["losses"][1]["params"] = {"scael": 2}
    cfg_path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UsageError, match=f"unknown params key 'scael' for loss '{name}'; "
                                         "allowed: scale"):
        load_config(cfg_path, DistillExperiment)


def test_a_dotted_plugin_and_a_file_imported_under_its_module_name_load_once(
        tmp_path, monkeypatch):
    name = f"mse_{tmp_path.name}"
    path = write_plugin(tmp_path / "userpkg", "kd_losses.py", name)
    (tmp_path / "userpkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = load_plugins(["userpkg.kd_losses"])[0]
    assert LOSSES.origin(name) == "userpkg.kd_losses"
    assert load_plugins([str(path), "userpkg.kd_losses"]) == [module, module]


@pytest.mark.parametrize("spec, needles", [
    ("no_such_pkg.losses", ["'no_such_pkg.losses'", "no module named 'no_such_pkg'",
                            "PYTHONPATH", "pip install"]),
    ("missing.py", ["/missing.py' does not exist", "next to the config"]),
])
def test_a_plugin_that_cannot_be_found_is_named_with_the_fix(spec, needles, tmp_path,
                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as err:
        DistillExperiment.model_validate(distill_raw([{"name": "ce"}], [spec]))
    for needle in needles:
        assert needle in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_a_broken_plugin_says_why_in_one_line(tmp_path):
    needs = tmp_path / "needs_dep.py"
    needs.write_text("import edgedistill_no_such_dependency\n")
    with pytest.raises(UsageError, match="imports 'edgedistill_no_such_dependency', which is "
                                         "not installed.*pip install"):
        load_plugins([str(needs)])
    broken = tmp_path / "broken.py"
    broken.write_text("x = 1\ndef f(:\n")
    with pytest.raises(UsageError, match=r"SyntaxError: .*broken.py, line 2"):
        load_plugins([str(broken)])
    raises = tmp_path / "raises.py"
    raises.write_text("\n\nraise RuntimeError('no GPU here')\n")
    with pytest.raises(UsageError, match=r"RuntimeError: no GPU here .*raises.py, line 3"):
        load_plugins([str(raises)])
    assert "edgedistill_plugin_raises" not in sys.modules  # a retry imports it afresh


def test_a_plugin_cannot_take_a_builtin_name(tmp_path):
    path = write_plugin(tmp_path, "clash.py", "kd")
    with pytest.raises(UsageError, match=r"clash.py' failed: ValueError: loss 'kd' is built "
                                         r"in \(edgedistill.losses.kd\); give 'LogitMSE' "
                                         "another name"):
        load_plugins([str(path)])
    assert LOSSES.origin("kd") == "edgedistill.losses.kd"


def test_an_installed_entry_point_is_listed_with_its_module(tmp_path):
    name = f"mse_{tmp_path.name}"
    write_plugin(tmp_path / "site" / "ep_pkg", "losses.py", name)
    (tmp_path / "site" / "ep_pkg" / "__init__.py").write_text("")
    info = tmp_path / "site" / "ep_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-pkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[edgedistill.plugins]\nmse = ep_pkg.losses\n")
    env = {"PYTHONPATH": str(tmp_path / "site")}
    listing = run_cli_env(env, "losses")
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if f" {name} " in line)
    assert "ep_pkg.losses" in row and "MSE between logits" in row
    assert "edgedistill.losses.kd" in listing.stdout  # built-ins beside it


def run_cli_env(env: dict, *args: str):
    import subprocess

    full = {**os.environ, "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([env["PYTHONPATH"], *sys.path])}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=full, timeout=300)


def test_plugin_losses_train_in_a_real_distill_run_and_are_listed(tmp_path):
    """The issue's done-when: plugin losses in user modules, one a .py file next to the
    config and one a dotted module on PYTHONPATH, used from YAML by ``edgedistill
    distill``, and listed by ``edgedistill losses`` with where they came from."""
    from_file, from_module = f"file_mse_{tmp_path.name}", f"mod_mse_{tmp_path.name}"
    write_plugin(tmp_path / "exp", "my_losses.py", from_file)
    write_plugin(tmp_path / "site" / "userpkg2", "kd_losses.py", from_module)
    (tmp_path / "site" / "userpkg2" / "__init__.py").write_text("")
    cfg = tmp_path / "exp" / "plug.yaml"
    cfg.write_text(yaml.safe_dump(distill_raw(
        [{"name": "ce", "weight": 1.0}, {"name": from_file, "params": {"scale": 0.5}},
         {"name": from_module}], ["my_losses.py", "userpkg2.kd_losses"])))
    env = {"PYTHONPATH": str(tmp_path / "site")}
    out = tmp_path / "run"
    result = run_cli_env(env, "distill", str(cfg), "--out", str(out))
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record[f"loss/{from_file}"] > 0 and record[f"loss/{from_module}"] > 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["plugins"] == [str((tmp_path / "exp" / "my_losses.py").resolve()),
                                "userpkg2.kd_losses"]
    listing = run_cli_env(env, "losses", "--plugin", str(tmp_path / "exp" / "my_losses.py"),
                          "--plugin", "userpkg2.kd_losses")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[1]: line for line in listing.stdout.splitlines() if "│" in line}
    assert str((tmp_path / "exp" / "my_losses.py").resolve()) in rows[from_file]
    assert "userpkg2.kd_losses" in rows[from_module]


def test_a_misspelt_loss_parameter_exits_2_fast_without_reading_the_data(tmp_path):
    """A typo is refused at config load: the data root does not exist, nothing is written,
    and the error is about the parameter. Fast because checking a config imports no
    torch (1.7 s to import alone here): the command's CPU time, interpreter start
    included, stays under 2 s, and so does its wall time unless the shared machine is
    overloaded (more runnable jobs than cores), where it is only bounded."""
    root = tmp_path / "no_dataset_here"
    cfg = tmp_path / "typo.yaml"
    cfg.write_text(yaml.safe_dump(distill_raw(
        [{"name": "ce"}, {"name": "kd", "params": {"temprature": 4}}], [], root=str(root))))
    run = timed_cli("distill", str(cfg), "--out", str(tmp_path / "run"), timeout=60)
    result, errors, cpu, wall = run.result, run.errors, run.cpu, run.wall
    assert result.returncode == 2, result.stderr
    assert errors == [f"error: {cfg}: losses.1.params: Value error, unknown params key "
                      "'temprature' for loss 'kd'; allowed: start_epoch, temperature "
                      "(got {'temprature': 4})"]
    assert "edgedistill.config" in run.imported and "torch" not in run.imported
    assert not root.exists() and not (tmp_path / "run").exists()
    assert cpu < 2.0, f"{cpu:.2f} s CPU"
    overloaded = os.getloadavg()[0] > (os.cpu_count() or 1)
    assert wall < (10.0 if overloaded else 2.0), f"{wall:.2f} s wall"


def test_a_misspelt_plugin_parameter_is_refused_by_the_cli(tmp_path):
    name = f"mse_{tmp_path.name}"
    write_plugin(tmp_path, "mine.py", name)
    cfg = tmp_path / "typo.yaml"
    cfg.write_text(yaml.safe_dump(distill_raw(
        [{"name": name, "params": {"scael": 1}}], ["mine.py"], root=str(tmp_path / "none"))))
    result = run_cli("distill", str(cfg))
    assert result.returncode == 2
    assert f"unknown params key 'scael' for loss '{name}'; allowed: scale" in result.stderr


def test_loss_listing_shows_where_each_came_from():
    listing = run_cli("losses")
    assert listing.returncode == 0, listing.stderr
    assert all(f"edgedistill.losses.{m}" in listing.stdout for m in ("kd", "reviewkd", "hint_kd"))


def test_an_unreadable_plugin_from_the_cli_is_one_line(tmp_path):
    result = run_cli("losses", "--plugin", "no_such_pkg_xyz")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: plugins: cannot import 'no_such_pkg_xyz': no module named 'no_such_pkg_xyz'; "
        "put the folder that holds it on PYTHONPATH, pip install its package, or give a .py "
        "file path"]

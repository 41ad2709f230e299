"""Study configs: presets, registered losses and combinations as loss terms; the grid's
cells and their experiments; the checks that keep a resumed grid consistent."""

from pathlib import Path

import pytest
import yaml

from edgedistill.config.study import HintConfig, StudyConfig, load_study
from edgedistill.errors import UsageError
from edgedistill.study.grid import Cell, cell_config, check_unchanged, expand
from edgedistill.study.techniques import expand_name, resolve_techniques
from tests.losses.helpers import forgetting_plugin_losses
from tests.study.conftest import study_dict

TEACHER = "teacher.safetensors"  # validated as a string only: nothing here loads it


def terms(losses):
    return [(t.name, t.weight, t.student_layers) for t in losses]


def test_presets_are_loss_term_lists():
    assert terms(expand_name("none", 30)) == [("ce", 1.0, [])]
    assert terms(expand_name("kd", 30)) == [("ce", 0.1, []), ("kd", 0.9, [])]
    # FitNets' two stages: the hint alone for a fifth of the run, then ce (fitnet) or kd
    fitnet = expand_name("fitnet", 30)
    assert terms(fitnet) == [("ce", 1.0, []), ("fitnet", 1.0, ["stage2"])]
    assert fitnet[0].params == {"start_epoch": 6} and fitnet[1].params == {"stage_epochs": 6}
    hint_kd = expand_name("hint+kd", 30)
    assert terms(hint_kd) == [("ce", 0.1, []), ("fitnet", 1.0, ["stage2"]), ("kd", 0.9, [])]
    assert [t.params.get("start_epoch") for t in hint_kd] == [6, None, 6]
    staged = expand_name("fitnet", 10, HintConfig(stage_epochs=3, weight=2.0, layers=["stage1"]))
    assert terms(staged)[1] == ("fitnet", 2.0, ["stage1"]) and staged[0].params["start_epoch"] == 3
    joint = expand_name("hint+kd", 10, HintConfig(joint_weight=100.0))
    assert terms(joint) == [("ce", 0.1, []), ("fitnet", 100.0, ["stage2"]), ("kd", 0.9, [])]
    assert all("start_epoch" not in t.params or t.params["start_epoch"] == 0 for t in joint)
    with pytest.raises(UsageError, match="less than train.epochs"):
        expand_name("fitnet", 3, HintConfig(stage_epochs=3))
    assert expand_name("dkd", 240)[1].params["warmup_epochs"] == 20
    assert expand_name("dkd", 4)[1].params["warmup_epochs"] == 1
    review = expand_name("reviewkd", 240)[1]
    assert (review.weight, review.params, review.student_layers) == (
        None, {"warmup_epochs": 20}, ["stage1", "stage2", "stage3", "embedding"])
    assert expand_name("reviewkd", 30)[1].params["warmup_epochs"] == 2


def test_registered_loss_and_combination():
    assert terms(expand_name("crd", 5)) == [("ce", 1.0, []), ("crd", None, ["embedding"])]
    assert terms(expand_name("at+kd", 5)) == [
        ("ce", 0.1, []), ("at", 1000.0, ["stage1", "stage2", "stage3"]), ("kd", 0.9, [])]
    # the longest known name wins: hint+kd stays one preset, and its ce keeps its start
    combo = expand_name("hint+kd+at", 5)
    assert [t.name for t in combo] == ["ce", "fitnet", "kd", "at"]
    assert combo[0].params == {"start_epoch": 1}
    with pytest.raises(UsageError, match="not a preset.*registered loss"):
        expand_name("kd+nonsense", 5)
    with pytest.raises(UsageError, match="repeats a loss term"):
        expand_name("kd+kd", 5)


def test_schema_errors_name_the_problem(tmp_path):
    def load(**over):
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump(study_dict(TEACHER, **over)))
        return load_study(path)

    with pytest.raises(UsageError, match="must include 'none'"):
        load(techniques=["kd"])
    with pytest.raises(UsageError, match="share a label"):
        load(students=[{"derive": "shallower"}, {"name": "resnet8"}, {"name": "resnet8"}])
    with pytest.raises(UsageError, match="only letters"):
        load(students=[{"name": "resnet8", "label": "a/b"}])
    with pytest.raises(UsageError, match="seeds must be distinct"):
        load(seeds=[0, 0])
    with pytest.raises(UsageError, match="needs target.accuracy"):
        load(target={"kind": "accuracy"})
    with pytest.raises(UsageError, match="unknown key 'train.epoch'.*epochs"):
        load(train={"epoch": 3})
    with pytest.raises(UsageError, match="unknown loss 'nope'"):
        load(techniques=["none", {"label": "x", "losses": [{"name": "nope"}]}])
    with pytest.raises(UsageError, match="may hold only ce"):
        load(techniques=[{"label": "none", "losses": [{"name": "kd"}]}])
    assert load(target={"kind": "accuracy", "accuracy": 0.8}).target.accuracy == 0.8


def test_grid_cells_and_their_experiments():
    cfg = StudyConfig.model_validate(study_dict(
        TEACHER, students=[{"derive": "shallower"}, {"name": "resnet8", "label": "r8"}],
        techniques=["none", "fitnet"], seeds=[3, 4]))
    techniques = resolve_techniques(cfg)
    cells = expand(cfg, techniques)
    assert len(cells) == 8 and len(set(cells)) == 8
    assert [c.seed for c in cells[:4]] == [3, 3, 3, 3]  # seed-major: full grids early
    assert cells[0] == Cell("shallower", "none", 3)
    exp = cell_config(cfg, Cell("r8", "fitnet", 4), techniques[1], Path("snap.safetensors"),
                      Path("cache"), threads=1)
    assert exp.seed == 4 and exp.student.name == "resnet8" and exp.halting == []
    assert exp.teacher.source == "snap.safetensors" and exp.teacher.mode == "cache"
    assert exp.teacher.cache.dir == "cache" and exp.train.threads == 1
    assert [t.name for t in exp.losses] == ["ce", "fitnet"]


def test_changed_settings_refuse_to_mix(tmp_path):
    cfg = StudyConfig.model_validate(study_dict(TEACHER))
    technique = resolve_techniques(cfg)[0]
    cell = Cell("shallower", "none", 0)
    exp = cell_config(cfg, cell, technique, Path("t"), Path("c"), threads=None)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(exp.model_dump(mode="json")))
    check_unchanged(tmp_path, cell_config(cfg, cell, technique, Path("t2"), Path("c2"), 2), cell)
    longer = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 9})})
    with pytest.raises(UsageError, match="train.epochs"):
        check_unchanged(tmp_path, cell_config(longer, cell, technique, Path("t"), Path("c"),
                                              None), cell)


def test_a_study_imports_its_plugins_and_hands_them_to_every_cell(tmp_path):
    with forgetting_plugin_losses():
        check_study_plugins(tmp_path)


def check_study_plugins(tmp_path):
    name = f"plug_{tmp_path.name}"
    (tmp_path / "my_terms.py").write_text(
        "from edgedistill.losses import LossTerm\n"
        "from edgedistill.losses.registry import register\n\n\n"
        f"@register({name!r})\n"
        "class Zero(LossTerm):\n"
        "    \"\"\"A loss that is always zero (a test plugin, 2026); default_weight 1.\"\"\"\n\n"
        "    def __init__(self, student_layers: list[str] | None = None,\n"
        "                 teacher_layers: list[str] | None = None, scale: float = 1.0):\n"
        "        super().__init__(student_layers, teacher_layers)\n\n"
        "    def forward(self, inputs):\n"
        "        return inputs.student_logits.sum() * 0\n")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study_dict(TEACHER, plugins=["my_terms.py"],
                                              techniques=["none", f"{name}+kd"])))
    cfg = load_study(path)
    assert cfg.plugins == [str((tmp_path / "my_terms.py").resolve())]
    technique = resolve_techniques(cfg)[1]
    assert [t.name for t in technique.losses] == ["ce", name, "kd"]
    exp = cell_config(cfg, Cell("shallower", technique.label, 0), technique, Path("t"),
                      Path("c"), threads=1)
    assert exp.plugins == cfg.plugins
    path.write_text(yaml.safe_dump(study_dict(TEACHER, plugins=["my_terms.py"], techniques=[
        "none", {"label": "x", "losses": [{"name": name, "params": {"scael": 2}}]}])))
    with pytest.raises(UsageError, match=f"unknown params key 'scael' for loss '{name}'; "
                                         "allowed: scale"):
        load_study(path)

import pytest

from edgedistill.config import DistillExperiment, TrainExperiment, validate
from edgedistill.errors import UsageError
from edgedistill.train.halting import HALTING, check_rule, parse_rules, should_halt


def make(kind, **settings):
    """A rule as a config's ``halting:`` entry gives it."""
    return parse_rules([{"kind": kind, **settings}])[0]


def hist(accs, **extra):
    out = []
    for i, a in enumerate(accs):
        rec = {"epoch": i, "test_acc": a, "train_loss": 1.0}
        for k, seq in extra.items():
            rec[k] = seq[i]
        out.append(rec)
    return out


def test_plateau_fires_only_after_patience_without_improvement():
    rule = make("plateau", patience=2, min_delta=0.01)
    h = hist([0.5, 0.7, 0.705, 0.709])
    assert check_rule(rule, h[:3]) is None  # 0.705 vs best-before 0.5: improved
    assert "plateau" in check_rule(rule, h)  # last 2 (0.705, 0.709) < 0.7 + 0.01
    assert check_rule(rule, hist([0.5, 0.7, 0.705, 0.72])) is None


def test_mean_plateau_is_not_held_back_by_one_lucky_epoch():
    # a spike at 0.86 among noisy epochs that still rise on average
    accs = [0.74, 0.79, 0.56, 0.80, 0.86, 0.81, 0.85, 0.86]
    best = make("plateau", patience=3, min_delta=0.002)
    mean = make("plateau", patience=3, min_delta=0.002, statistic="mean")
    assert "plateau" in check_rule(best, hist(accs))
    assert check_rule(mean, hist(accs)) is None  # 0.84 last 3 vs 0.74 the 3 before
    assert check_rule(mean, hist([0.8] * 5)) is None  # needs 2 x patience epochs
    slow = make("plateau", patience=3, min_delta=0.01, statistic="mean")
    reason = check_rule(slow, hist([0.80, 0.81, 0.82, 0.82, 0.81, 0.82]))
    assert "mean test accuracy 0.8167 of the last 3 epochs did not beat 0.8100 by 0.01" in reason


def test_agreement_threshold():
    rule = make("agreement", threshold=0.9)
    assert check_rule(rule, hist([0.8], agreement=[0.89])) is None
    assert "agreement" in check_rule(rule, hist([0.8], agreement=[0.9]))


def test_teacher_gap():
    rule = make("teacher_gap", epsilon=0.01)
    assert check_rule(rule, hist([0.90], teacher_acc=[0.92])) is None
    assert "teacher_gap" in check_rule(rule, hist([0.915], teacher_acc=[0.92]))


def test_rules_read_the_validation_split_when_the_run_holds_one_out():
    plateau = make("plateau", patience=1, min_delta=0.01)
    # test accuracy keeps rising, validation accuracy does not: the validation set decides
    h = hist([0.5, 0.6], val_acc=[0.7, 0.7])
    assert "plateau: validation accuracy 0.7000" in check_rule(plateau, h)
    assert check_rule(plateau, hist([0.5, 0.6])) is None
    gap = make("teacher_gap", epsilon=0.01)
    h = hist([0.80], val_acc=[0.915], teacher_acc=[0.92], teacher_val_acc=[0.92])
    assert "on the validation set" in check_rule(gap, h)
    agree = make("agreement", threshold=0.9)
    h = hist([0.8], val_acc=[0.8], agreement=[0.95], val_agreement=[0.85])
    assert check_rule(agree, h) is None


def test_loss_improvement_uses_distillation_terms():
    rule = make("loss_improvement", window=2, delta=0.05)
    h = hist([0.5, 0.6, 0.7], **{"loss/kd": [1.0, 0.99, 0.98], "loss/ce": [2.0, 1.0, 0.5]})
    reason = check_rule(rule, h)  # kd: (1.0 - 0.98) / 1.0 = 0.02 < 0.05
    assert reason and "0.0200" in reason
    h2 = hist([0.5, 0.6, 0.7], **{"loss/kd": [1.0, 0.9, 0.8]})
    assert check_rule(rule, h2) is None


def test_min_epochs_and_modes():
    agree = make("agreement", threshold=0.5, min_epochs=3)
    gap = make("teacher_gap", epsilon=0.001)
    h = hist([0.8, 0.8], agreement=[0.9, 0.9], teacher_acc=[0.9, 0.9])
    assert check_rule(agree, h) is None
    h3 = hist([0.8] * 3, agreement=[0.9] * 3, teacher_acc=[0.9] * 3)
    assert should_halt([agree, gap], h3, "any") is not None
    assert should_halt([agree, gap], h3, "all") is None


def test_teacher_rules_refused_at_load_without_teacher():
    with pytest.raises(UsageError, match=r"halting rules \['agreement'\] need a teacher"):
        validate({"model": {"name": "resnet8"}, "halting": [{"kind": "agreement"}]},
                 TrainExperiment)


DISTILL = {"teacher": {"source": "zoo:resnet20-fashion_mnist"}, "student": {"derive": "shallower"}}


@pytest.mark.parametrize("kind, typo, allowed", [
    ("plateau", "patiense", "kind, min_delta, min_epochs, patience, statistic"),
    ("agreement", "treshold", "kind, min_epochs, threshold"),
    ("teacher_gap", "epsilon_", "epsilon, kind, min_epochs"),
    ("loss_improvement", "patience", "delta, kind, min_epochs, window"),
])
def test_a_misspelt_field_is_refused_with_that_kinds_keys(kind, typo, allowed):
    with pytest.raises(UsageError) as err:
        validate({**DISTILL, "halting": [{"kind": "plateau"}, {"kind": kind, typo: 1}]},
                 DistillExperiment, "c.yaml")
    assert f"unknown halting[1] key {typo!r} for halting rule {kind!r}; allowed: {allowed}" \
        in str(err.value)


def test_unknown_kind_and_bad_values_are_refused():
    with pytest.raises(UsageError, match="unknown halting rule 'plato'; choose one of: "
                                         "agreement, loss_improvement, plateau, teacher_gap"):
        validate({**DISTILL, "halting": [{"kind": "plato"}]}, DistillExperiment)
    with pytest.raises(UsageError, match="halting.*needs a kind"):
        validate({**DISTILL, "halting": [{"patience": 3}]}, DistillExperiment)
    with pytest.raises(UsageError, match="patience.*greater than 0"):
        validate({**DISTILL, "halting": [{"kind": "plateau", "patience": 0}]}, DistillExperiment)
    with pytest.raises(UsageError, match="min_delta.*finite"):
        validate({**DISTILL, "halting": [{"kind": "plateau", "min_delta": float("nan")}]},
                 DistillExperiment)


def test_rules_round_trip_through_the_saved_config():
    from edgedistill.config import dump_config

    cfg = validate({**DISTILL, "halting": [{"kind": "plateau", "statistic": "mean"},
                                           {"kind": "teacher_gap", "epsilon": 0.01}]},
                   DistillExperiment)
    again = validate(__import__("yaml").safe_load(dump_config(cfg)), DistillExperiment)
    assert again.halting == cfg.halting
    assert [type(r).__name__ for r in again.halting] == ["Plateau", "TeacherGap"]
    assert again.halting[0].statistic == "mean" and again.halting[1].epsilon == 0.01


PLUGIN = """
from typing import ClassVar, Literal
from edgedistill.train.halting import HaltingRule, halting_rule

@halting_rule("train_acc_above")
class TrainAccAbove(HaltingRule):
    \"\"\"Stop once the training accuracy passes ``level``.\"\"\"
    shown: ClassVar[tuple] = ("level",)
    kind: Literal["train_acc_above"] = "train_acc_above"
    level: float = 0.5

    def check(self, history, read):
        acc = history[-1]["train_acc"]
        return f"train_acc_above: {acc:.3f} > {self.level}" if acc > self.level else None
"""


def test_a_plugin_rule_from_a_user_file_validates_and_halts(tmp_path):
    from edgedistill.train.halting import describe

    (tmp_path / "my_rules.py").write_text(PLUGIN)
    raw = {"plugins": [str(tmp_path / "my_rules.py")],
           "halting": [{"kind": "train_acc_above", "level": 0.6}]}
    cfg = validate({**DISTILL, **raw}, DistillExperiment)
    assert "train_acc_above" in HALTING and HALTING.origin("train_acc_above").endswith("my_rules")
    (plugin_rule,) = cfg.halting
    assert describe(plugin_rule) == "train_acc_above(level=0.6)"
    assert check_rule(plugin_rule, [{"epoch": 0, "train_acc": 0.5, "test_acc": 0.4}]) is None
    assert "0.700 > 0.6" in check_rule(plugin_rule, [{"epoch": 0, "train_acc": 0.7,
                                                      "test_acc": 0.4}])
    with pytest.raises(UsageError, match="unknown halting\\[0\\] key 'levl'.*allowed: kind, "
                                         "level, min_epochs"):
        validate({**DISTILL, **raw, "halting": [{"kind": "train_acc_above", "levl": 1}]},
                 DistillExperiment)


def test_every_float_field_of_every_halting_kind_refuses_inf():
    checked = 0
    for kind in HALTING.names():
        for name, field in HALTING.settings_model(kind).model_fields.items():
            if field.annotation is float:
                with pytest.raises(UsageError, match=f"{name}.*finite"):
                    validate({**DISTILL, "halting": [{"kind": kind, name: float("inf")}]},
                             DistillExperiment)
                checked += 1
    assert checked >= 4  # min_delta, threshold, epsilon, delta

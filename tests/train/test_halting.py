import pytest

from edgedistill.config import HaltingRule, TrainExperiment
from edgedistill.errors import UsageError
from edgedistill.train.halting import check_rule, halting_callbacks, should_halt


def hist(accs, **extra):
    out = []
    for i, a in enumerate(accs):
        rec = {"epoch": i, "test_acc": a, "train_loss": 1.0}
        for k, seq in extra.items():
            rec[k] = seq[i]
        out.append(rec)
    return out


def test_plateau_fires_only_after_patience_without_improvement():
    rule = HaltingRule(kind="plateau", patience=2, min_delta=0.01)
    h = hist([0.5, 0.7, 0.705, 0.709])
    assert check_rule(rule, h[:3]) is None  # 0.705 vs best-before 0.5: improved
    assert "plateau" in check_rule(rule, h)  # last 2 (0.705, 0.709) < 0.7 + 0.01
    assert check_rule(rule, hist([0.5, 0.7, 0.705, 0.72])) is None


def test_mean_plateau_is_not_held_back_by_one_lucky_epoch():
    # a spike at 0.86 among noisy epochs that still rise on average
    accs = [0.74, 0.79, 0.56, 0.80, 0.86, 0.81, 0.85, 0.86]
    best = HaltingRule(kind="plateau", patience=3, min_delta=0.002)
    mean = HaltingRule(kind="plateau", patience=3, min_delta=0.002, statistic="mean")
    assert "plateau" in check_rule(best, hist(accs))
    assert check_rule(mean, hist(accs)) is None  # 0.84 last 3 vs 0.74 the 3 before
    assert check_rule(mean, hist([0.8] * 5)) is None  # needs 2 x patience epochs
    slow = HaltingRule(kind="plateau", patience=3, min_delta=0.01, statistic="mean")
    reason = check_rule(slow, hist([0.80, 0.81, 0.82, 0.82, 0.81, 0.82]))
    assert "mean test accuracy 0.8167 of the last 3 epochs did not beat 0.8100 by 0.01" in reason


def test_agreement_threshold():
    rule = HaltingRule(kind="agreement", threshold=0.9)
    assert check_rule(rule, hist([0.8], agreement=[0.89])) is None
    assert "agreement" in check_rule(rule, hist([0.8], agreement=[0.9]))


def test_teacher_gap():
    rule = HaltingRule(kind="teacher_gap", epsilon=0.01)
    assert check_rule(rule, hist([0.90], teacher_acc=[0.92])) is None
    assert "teacher_gap" in check_rule(rule, hist([0.915], teacher_acc=[0.92]))


def test_rules_read_the_validation_split_when_the_run_holds_one_out():
    plateau = HaltingRule(kind="plateau", patience=1, min_delta=0.01)
    # test accuracy keeps rising, validation accuracy does not: the validation set decides
    h = hist([0.5, 0.6], val_acc=[0.7, 0.7])
    assert "plateau: validation accuracy 0.7000" in check_rule(plateau, h)
    assert check_rule(plateau, hist([0.5, 0.6])) is None
    gap = HaltingRule(kind="teacher_gap", epsilon=0.01)
    h = hist([0.80], val_acc=[0.915], teacher_acc=[0.92], teacher_val_acc=[0.92])
    assert "on the validation set" in check_rule(gap, h)
    agree = HaltingRule(kind="agreement", threshold=0.9)
    h = hist([0.8], val_acc=[0.8], agreement=[0.95], val_agreement=[0.85])
    assert check_rule(agree, h) is None


def test_loss_improvement_uses_distillation_terms():
    rule = HaltingRule(kind="loss_improvement", window=2, delta=0.05)
    h = hist([0.5, 0.6, 0.7], **{"loss/kd": [1.0, 0.99, 0.98], "loss/ce": [2.0, 1.0, 0.5]})
    reason = check_rule(rule, h)  # kd: (1.0 - 0.98) / 1.0 = 0.02 < 0.05
    assert reason and "0.0200" in reason
    h2 = hist([0.5, 0.6, 0.7], **{"loss/kd": [1.0, 0.9, 0.8]})
    assert check_rule(rule, h2) is None


def test_min_epochs_and_modes():
    agree = HaltingRule(kind="agreement", threshold=0.5, min_epochs=3)
    gap = HaltingRule(kind="teacher_gap", epsilon=0.001)
    h = hist([0.8, 0.8], agreement=[0.9, 0.9], teacher_acc=[0.9, 0.9])
    assert check_rule(agree, h) is None
    h3 = hist([0.8] * 3, agreement=[0.9] * 3, teacher_acc=[0.9] * 3)
    assert should_halt([agree, gap], h3, "any") is not None
    assert should_halt([agree, gap], h3, "all") is None


def test_teacher_rules_refused_without_teacher():
    cfg = TrainExperiment.model_validate({"model": {"name": "resnet8"},
                                          "halting": [{"kind": "agreement"}]})
    with pytest.raises(UsageError, match="need a teacher"):
        halting_callbacks(cfg)

"""The study's statistics against values computed by hand."""

import math

import pytest

from edgedistill.config.study import TargetConfig
from edgedistill.study.metrics import (
    GAIN,
    NEGATIVE,
    UNCLEAR,
    cell_metrics,
    group_stats,
    mean_std,
    student_targets,
    t_interval,
    t_quantile,
    verdict,
)

RECORDS = [{"epoch": i, "test_acc": a, "wall_seconds": 10.0 * (i + 1),
            "images_seen": 100 * (i + 1)} for i, a in enumerate([0.5, 0.7, 0.8, 0.79])]


def test_cell_figures():
    m = cell_metrics(RECORDS, target=0.75)
    assert m["final_acc"] == 0.79 and m["best_acc"] == 0.8
    assert m["auc"] == pytest.approx((0.5 + 0.7 + 0.8 + 0.79) / 4)
    assert (m["epochs_to_target"], m["wall_to_target"], m["images_to_target"]) == (3, 30.0, 300)
    never = cell_metrics(RECORDS, target=0.81)
    assert never["epochs_to_target"] is None and never["wall_to_target"] is None
    assert cell_metrics(RECORDS, target=None)["epochs_to_target"] is None


def test_t_quantiles_match_the_table():
    assert t_quantile(0.95, 1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile(0.95, 2) == pytest.approx(4.303, abs=1e-3)
    assert t_quantile(0.95, 4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile(0.90, 2) == pytest.approx(2.920, abs=1e-3)


def test_mean_std_and_interval_by_hand():
    assert mean_std([]) == (None, None)
    assert mean_std([0.3]) == (0.3, 0.0)
    m, s = mean_std([0.01, 0.03, 0.02])
    assert m == pytest.approx(0.02) and s == pytest.approx(0.01)
    ci = t_interval([0.01, 0.03, 0.02], 0.95)
    half = 4.302653 * 0.01 / math.sqrt(3)  # = 0.0248414
    assert ci["low"] == pytest.approx(0.02 - half, abs=1e-6)
    assert ci["high"] == pytest.approx(0.02 + half, abs=1e-6)
    assert t_interval([0.02], 0.95)["low"] is None


def test_negative_transfer_only_when_whole_interval_is_below_zero():
    assert verdict(t_interval([-0.02, -0.025, -0.025], 0.95)) == NEGATIVE  # [-0.0305, -0.0162]
    assert verdict(t_interval([-0.03, 0.01, -0.02], 0.95)) == UNCLEAR
    assert verdict(t_interval([0.05, 0.04, 0.06], 0.95)) == GAIN
    assert verdict(t_interval([-0.05], 0.95)) is None  # one seed: no interval, no claim


def cells(technique, finals, epochs_to_target):
    return [{"student": "s", "technique": technique, "seed": seed, "final_acc": f,
             "best_acc": f, "auc": f - 0.1, "wall_seconds": 40.0, "agreement": 0.9, "epochs": 5,
             "epochs_to_target": e, "wall_to_target": None if e is None else 10.0 * e,
             "images_to_target": None if e is None else 100 * e, "target": 0.8}
            for seed, (f, e) in enumerate(zip(finals, epochs_to_target, strict=True))]


def test_groups_pair_gains_by_seed_and_mark_negative_transfer():
    rows = group_stats(
        cells("none", [0.80, 0.82, 0.81], [4, 4, 4]) + cells("kd", [0.81, 0.85, 0.83], [2, 2, 2])
        + cells("bad", [0.78, 0.795, 0.785], [None, None, None])
        + cells("odd", [0.90, 0.70], [1, 3]), 0.95)
    by = {r["technique"]: r for r in rows}
    assert "gain_mean" not in by["none"] and by["none"]["speedup_epochs"] is None
    kd = by["kd"]
    assert kd["gain_mean"] == pytest.approx(0.02) and kd["gain_std"] == pytest.approx(0.01)
    assert kd["gain_low"] == pytest.approx(-0.0048414, abs=1e-6)
    assert kd["verdict"] == UNCLEAR and kd["gain_pairs"] == 3
    assert kd["speedup_epochs"] == pytest.approx(2.0) and kd["speedup_wall"] == pytest.approx(2.0)
    assert kd["final_acc_mean"] == pytest.approx(0.83) and kd["reached"] == 3
    # convergence, paired by seed: 4 - 2 epochs on every seed, and AUC moves as the finals
    assert (kd["epochs_saved_mean"], kd["epochs_saved_low"], kd["epochs_saved_high"]) == (2, 2, 2)
    assert kd["speed_verdict"] == GAIN and kd["censored"] == 0
    assert kd["auc_gain_mean"] == pytest.approx(0.02) and kd["auc_verdict"] == UNCLEAR
    bad = by["bad"]
    assert bad["gain_mean"] == pytest.approx(-0.0233333, abs=1e-6)
    assert bad["gain_high"] == pytest.approx(-0.0233333 + 0.0071711, abs=1e-6)
    assert bad["verdict"] == NEGATIVE
    assert bad["reached"] == 0 and bad["speedup_epochs"] is None
    # never reached in 5 epochs: counted as 6, two more than scratch's 4
    assert bad["epochs_saved_mean"] == -2 and bad["speed_verdict"] == NEGATIVE
    assert bad["censored"] == 3
    odd = by["odd"]  # only seeds 0 and 1 have a pair
    assert odd["gain_pairs"] == 2 and odd["gain_mean"] == pytest.approx((0.10 - 0.12) / 2)
    assert odd["epochs_to_target_mean"] == 2.0


def test_targets():
    finals = {"a": [0.80, 0.82], "b": []}
    got = student_targets(finals, ["a", "b"], TargetConfig())
    assert got["a"] == pytest.approx(0.99 * 0.81) and got["b"] is None
    fixed = student_targets(finals, ["a", "b"], TargetConfig(kind="accuracy", accuracy=0.7))
    assert fixed == {"a": 0.7, "b": 0.7}

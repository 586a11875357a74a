import numpy as np
import pytest

from src.components.calibration import (
    brier_score,
    calibration_report,
    expected_calibration_error,
    logistic_baseline,
)


def test_brier_score_is_the_mean_squared_gap():
    assert brier_score(np.array([1.0, 0.0, 0.5]), np.array([1, 0, 1])) == pytest.approx(0.25 / 3)


def test_ece_weights_each_equal_width_bin_by_its_share():
    # bin [0.1, 0.2): chance 0.15 twice, both below -> gap 0.85, share 2/4; bin [0.9, 1.0]: 1.0 and 0.9, one below
    p = np.array([0.15, 0.15, 1.0, 0.9])
    y = np.array([1, 1, 1, 0])
    assert expected_calibration_error(p, y) == pytest.approx(0.5 * 0.85 + 0.5 * abs(0.95 - 0.5))
    assert expected_calibration_error(np.array([0.3, 0.3, 0.3]), np.array([0, 1, 0])) == pytest.approx(abs(0.3 - 1 / 3))


def test_a_calibrated_chance_has_a_small_ece_and_a_wrong_one_a_large_ece():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=20_000)
    y = rng.uniform(size=p.size) < p
    assert expected_calibration_error(p, y) < 0.02
    assert expected_calibration_error(np.clip(p + 0.3, 0, 1), y) > 0.2


def test_the_logistic_baseline_learns_below_the_cut_and_needs_both_sides():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 2))
    y = 50 + 10 * x[:, 0] + rng.normal(size=400)
    chance = logistic_baseline(x[:300], y[:300], x[300:], 50.0, seed=0)
    assert chance is not None and brier_score(chance, y[300:] < 50) < 0.1
    assert logistic_baseline(x, np.full(400, 80.0), x, 50.0, seed=0) is None


def test_the_report_holds_both_chances_on_the_test_split():
    y = np.array([40.0, 60.0, 45.0, 70.0])
    report = calibration_report(np.array([0.9, 0.1, 0.6, 0.2]), None, y, 50.0, "ours")
    assert report["share_below"] == 0.5 and report["test_rows"] == 4 and report["bins"] == 10
    assert report["baseline"] is None and report["model"]["brier"] == pytest.approx((0.01 + 0.01 + 0.16 + 0.04) / 4)

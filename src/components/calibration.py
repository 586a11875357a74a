"""How good a chance of "below the cut" is, on the test split: Brier score and expected calibration error.

Beside the model's own chance (from its predictive distribution), training measures the baseline a data team
would reach for: a logistic regression trained on the training split to predict "below the cut" from the
same transformed features. Both are scored on the same test students, once.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

logger = logging.getLogger(__name__)

BINS = 10
BASELINE = "logistic_regression"


def brier_score(probabilities: np.ndarray, outcomes: np.ndarray) -> float:
    """Mean squared difference between the chance given and what happened (1 below the cut, else 0)."""
    p = np.asarray(probabilities, dtype=float)
    return float(np.mean((p - np.asarray(outcomes, dtype=float)) ** 2))


def expected_calibration_error(probabilities: np.ndarray, outcomes: np.ndarray, bins: int = BINS) -> float:
    """Over ``bins`` equal-width bins of the chance: the share-weighted gap between mean chance and observed rate.

    A chance of exactly 1.0 falls in the last bin.
    """
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(outcomes, dtype=float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(float(p[inside].mean()) - float(y[inside].mean()))
    return float(total)


def logistic_baseline(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, cut: float, seed: int
) -> np.ndarray | None:
    """The chance of "below the cut" on the test split from a logistic regression fit on the training split.

    None when the training split has students on one side of the cut only (nothing to learn).
    """
    below = np.asarray(y_train, dtype=float) < cut
    if below.all() or not below.any():
        return None
    model = LogisticRegression(max_iter=1000, random_state=seed).fit(x_train, below)
    return model.predict_proba(x_test)[:, list(model.classes_).index(True)]


def calibration_report(
    ours: np.ndarray, baseline: np.ndarray | None, y_test: np.ndarray, cut: float, method: str
) -> dict[str, Any]:
    """``metrics.json``'s ``below_cut``: both chances' Brier score and ECE on the test split."""
    outcomes = np.asarray(y_test, dtype=float) < cut
    report: dict[str, Any] = {
        "cut": float(cut),
        "test_rows": int(len(outcomes)),
        "share_below": float(outcomes.mean()),
        "bins": BINS,
        "method": method,
        "model": {"brier": brier_score(ours, outcomes), "ece": expected_calibration_error(ours, outcomes)},
        "baseline_method": f"{BASELINE} on the training split's features, predicting below the cut",
        "baseline": None,
    }
    if baseline is not None:
        report["baseline"] = {
            "brier": brier_score(baseline, outcomes),
            "ece": expected_calibration_error(baseline, outcomes),
        }
    logger.info(
        "below the cut %g on the test split: Brier %.4f, ECE %.4f (baseline %s)",
        cut,
        report["model"]["brier"],
        report["model"]["ece"],
        report["baseline"],
    )
    return report

"""Drift: how far recent students (and our predictions for them) have moved from the training data.

Statistic: the population stability index (PSI) per feature, over the training split's deciles for the
scores and over the categories for the categorical features, plus PSI of the predicted scores against the
test split's predictions. PSI was chosen over KS / chi-square p-values because it is a size of shift, not a
significance: with a window of 500 students a p-value flags shifts too small to matter, and it reads the
same for categorical and numeric features. Its weakness is small windows: under no drift its expected value
is about (bins - 1) / n (0.09 for 100 students over 10 bins), so drift is reported only once the window
holds ``min_samples`` students (default 200, where a false alarm at the 0.2 threshold is below 1 in 10,000
per feature), and both sides are smoothed by half a count per bin so an empty bin never gives infinity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from src.schema import CATEGORICAL_FEATURES, FEATURE_NAMES, NUMERIC_FEATURES

PREDICTION = "prediction"
# Columns of one window row: the categorical features as category codes, the scores, then the prediction.
WINDOW_COLUMNS: tuple[str, ...] = (
    tuple(f.name for f in CATEGORICAL_FEATURES) + tuple(f.name for f in NUMERIC_FEATURES) + (PREDICTION,)
)
BINS = 10
SMOOTHING = 0.5

_CATEGORICAL_NAMES = tuple(f.name for f in CATEGORICAL_FEATURES)
_NUMERIC_NAMES = tuple(f.name for f in NUMERIC_FEATURES)
_CODES: dict[str, dict[str, int]] = {f.name: {c: i for i, c in enumerate(f.categories)} for f in CATEGORICAL_FEATURES}


def encode_rows(records: Sequence[Mapping[str, Any]], predictions: Sequence[float]) -> np.ndarray:
    """Validated students and their predictions as window rows (float64, WINDOW_COLUMNS)."""
    rows = np.empty((len(records), len(WINDOW_COLUMNS)), dtype=np.float64)
    for i, name in enumerate(_CATEGORICAL_NAMES):
        codes = _CODES[name]
        rows[:, i] = np.fromiter((codes[r[name]] for r in records), dtype=np.float64, count=len(records))
    for j, name in enumerate(_NUMERIC_NAMES, start=len(_CATEGORICAL_NAMES)):
        rows[:, j] = np.fromiter((r[name] for r in records), dtype=np.float64, count=len(records))
    rows[:, -1] = predictions
    return rows


def build_reference(train: pd.DataFrame, test_predictions: np.ndarray) -> dict[str, Any]:
    """The training split's profile: decile edges and shares per score, category shares, prediction shares."""
    profile: dict[str, Any] = {"statistic": "psi", "bins": BINS, "features": {}}
    for feature in CATEGORICAL_FEATURES:
        codes = train[feature.name].map(_CODES[feature.name]).to_numpy(dtype=float)
        profile["features"][feature.name] = {
            "type": "categorical",
            "categories": list(feature.categories),
            "shares": _shares(_counts_categorical(codes, len(feature.categories))),
        }
    for name, values in [(f.name, train[f.name].to_numpy(dtype=float)) for f in NUMERIC_FEATURES] + [
        (PREDICTION, np.asarray(test_predictions, dtype=float))
    ]:
        edges = _inner_edges(values)
        profile["features"][name] = {
            "type": "numeric",
            "edges": edges,
            "shares": _shares(_counts_numeric(values, edges)),
        }
    return profile


def psi(expected: np.ndarray, observed_counts: np.ndarray) -> float:
    actual = np.asarray(_shares(observed_counts))
    expected = np.asarray(expected)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def drift_report(profile: Mapping[str, Any], rows: np.ndarray, *, threshold: float, min_samples: int) -> dict[str, Any]:
    """Compare a window of rows (WINDOW_COLUMNS) with the reference profile."""
    counts: dict[str, np.ndarray] = {}
    for j, name in enumerate(WINDOW_COLUMNS):
        ref = profile["features"][name]
        column = rows[:, j]
        if ref["type"] == "categorical":
            counts[name] = _counts_categorical(column, len(ref["categories"]))
        else:
            counts[name] = _counts_numeric(column, ref["edges"])
    return report_from_counts(profile, counts, int(rows.shape[0]), threshold=threshold, min_samples=min_samples)


def report_from_counts(
    profile: Mapping[str, Any], counts: Mapping[str, np.ndarray], n: int, *, threshold: float, min_samples: int
) -> dict[str, Any]:
    """The drift report from students counted per reference bin (``counts[name]``, in the profile's bin order).

    One place for the statistic and the rule, whether the counts come from one server's window or from the
    fleet's counters summed by Prometheus (src.monitoring.fleet).
    """
    scores: dict[str, float | None] = {}
    for name in WINDOW_COLUMNS:
        scores[name] = psi(np.asarray(profile["features"][name]["shares"]), counts[name]) if n > 0 else None
    enough = n >= min_samples
    drifted = sorted(k for k, v in scores.items() if v is not None and v >= threshold) if enough else []
    return {
        "statistic": "psi",
        "threshold": threshold,
        "window_size": n,
        "min_samples": min_samples,
        "enough_data": enough,
        "drift_detected": bool(drifted),
        "drifted_features": drifted,
        "features": {k: scores[k] for k in FEATURE_NAMES},
        "prediction": scores[PREDICTION],
    }


def reference_bin(profile: Mapping[str, Any], name: str, value: float) -> int:
    """The reference bin of a numeric value (as ``drift_report`` counts it: the number of edges at or below it)."""
    return int(np.searchsorted(np.asarray(profile["features"][name]["edges"]), value, side="right"))


def _inner_edges(values: np.ndarray) -> list[float]:
    quantiles = np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1])
    return [float(v) for v in np.unique(quantiles)]


def _counts_numeric(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    return np.bincount(np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1)


def _counts_categorical(codes: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(codes.astype(np.int64), minlength=k)


def _shares(counts: np.ndarray) -> list[float]:
    smoothed = np.asarray(counts, dtype=float) + SMOOTHING
    return [float(v) for v in smoothed / smoothed.sum()]

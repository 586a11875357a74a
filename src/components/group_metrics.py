"""Errors by student group: count, MAE, mean signed error and interval coverage per group of each category.

Computed on the test split at training with Fairlearn's ``MetricFrame`` (one frame per categorical feature of
the schema), stored in ``metrics.json`` and the manifest under ``"groups"``:

    {"gender": {"female": {"count": 104, "mae": 4.1, "bias": -0.3, "coverage": 0.91, "small": false}, ...}, ...}

``bias`` is the mean of predicted minus actual (positive: the model predicts too high for that group). Every
category of the schema is listed, even one absent from the test split (count 0, the other figures None), and
groups with fewer than ``SMALL_GROUP`` test rows are flagged ``small``, never hidden: their figures are noisy.

``group_check`` is the per-group part of the promotion decision: a pure function on two such tables.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from src.schema import CATEGORICAL_FEATURES, CategoricalFeature

logger = logging.getLogger(__name__)

SMALL_GROUP = 30  # test rows below which a group's figures are flagged as noisy
DEFAULT_GROUP_TOLERANCE = 0.5  # MAE points the worst group may lose against the champion's worst group

GroupTable = Mapping[str, Mapping[str, Mapping[str, Any]]]


def _count(y_true: np.ndarray, y_pred: np.ndarray) -> int:
    return len(y_true)


def _mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y_pred) - np.asarray(y_true))))


def _bias(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_pred) - np.asarray(y_true)))


def _coverage(y_true: np.ndarray, y_pred: np.ndarray, half_width: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y_true) - np.asarray(y_pred)) <= np.asarray(half_width)))


def _covered(y_true: np.ndarray, y_pred: np.ndarray, covered: np.ndarray) -> float:
    return float(np.mean(np.asarray(covered, dtype=bool)))


def group_metrics(
    frame: pd.DataFrame,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    half_width: float | np.ndarray,
    features: Sequence[CategoricalFeature] = CATEGORICAL_FEATURES,
    small: int = SMALL_GROUP,
    covered: np.ndarray | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per group of each categorical feature: count, MAE, bias (mean predicted - actual), coverage, small.

    ``frame`` holds the students (the feature columns) in the order of ``y_true`` and ``y_pred``;
    ``half_width`` is the interval's half-width, one number or one per student (a group-conditional interval).
    ``covered`` (one bool per student), when given, says whether each real score fell inside the range as it
    was reported (clipped to the target's range and rounded), and replaces the half-width rule for coverage.
    """
    from fairlearn.metrics import MetricFrame  # training only: serving never computes group metrics

    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    widths = np.broadcast_to(np.asarray(half_width, dtype=float), y_true.shape)
    if not len(frame) == len(y_true) == len(y_pred):
        raise ValueError(f"group_metrics: {len(frame)} students, {len(y_true)} labels, {len(y_pred)} predictions")
    table: dict[str, dict[str, dict[str, Any]]] = {}
    if covered is None:
        coverage_metric, coverage_params = _coverage, {"half_width": widths}
    else:
        coverage_metric, coverage_params = _covered, {"covered": np.asarray(covered, dtype=bool)}
    for feature in features:
        by_group = MetricFrame(
            metrics={"count": _count, "mae": _mae, "bias": _bias, "coverage": coverage_metric},
            y_true=y_true,
            y_pred=y_pred,
            # a Series, not an array: fairlearn squeezes an array, and one student's array has no dimension left
            sensitive_features=pd.Series(frame[feature.name].astype(str).to_numpy(), name=feature.name),
            sample_params={"coverage": coverage_params},
        ).by_group
        rows: dict[str, dict[str, Any]] = {}
        for category in feature.categories:
            if category in by_group.index:
                found = by_group.loc[category]
                count = int(found["count"])
                rows[category] = {
                    "count": count,
                    "mae": float(found["mae"]),
                    "bias": float(found["bias"]),
                    "coverage": float(found["coverage"]),
                    "small": count < small,
                }
            else:
                rows[category] = {"count": 0, "mae": None, "bias": None, "coverage": None, "small": True}
        table[feature.name] = rows
    return table


def worst_group(groups: GroupTable, min_rows: int = SMALL_GROUP) -> tuple[str, str, float] | None:
    """(feature, group, MAE) of the group with the highest MAE among groups of at least ``min_rows`` rows."""
    worst: tuple[str, str, float] | None = None
    for feature, rows in groups.items():
        for group, row in rows.items():
            mae = row.get("mae")
            if mae is None or int(row.get("count", 0)) < min_rows or not math.isfinite(float(mae)):
                continue
            if worst is None or float(mae) > worst[2]:
                worst = (feature, group, float(mae))
    return worst


def group_check(
    candidate_groups: GroupTable | None,
    champion_groups: GroupTable | None,
    tolerance: float = DEFAULT_GROUP_TOLERANCE,
    min_rows: int = SMALL_GROUP,
) -> str | None:
    """None when the candidate passes, else the reason, naming the feature and the group.

    The candidate's worst group (highest MAE among groups of at least ``min_rows`` test rows) may not exceed
    the champion's worst group's MAE by more than ``tolerance`` points. Both tables should come from the same
    test split. With no champion table (the first model, or a champion trained before group metrics) there is
    nothing to compare with: the check passes. A candidate without a table cannot be checked: it fails.
    """
    if champion_groups is None:
        return None
    if candidate_groups is None:
        return "the candidate has no per-group metrics to compare with the champion's"
    champion = worst_group(champion_groups, min_rows)
    candidate = worst_group(candidate_groups, min_rows)
    if champion is None:
        return None
    if candidate is None:
        return f"the candidate has no group of at least {min_rows} test rows to compare with the champion's"
    feature, group, mae = candidate
    if mae > champion[2] + tolerance:
        return (
            f"worst group {feature}={group}: MAE {mae:.2f} vs the champion's worst group "
            f"{champion[0]}={champion[1]} {champion[2]:.2f} (tolerance {tolerance:g} points)"
        )
    return None


def coverage_outside(
    groups: GroupTable, low: float = 0.85, high: float = 0.95, min_rows: int = 100
) -> list[tuple[str, str, int, float]]:
    """Groups of at least ``min_rows`` test rows whose interval coverage lies outside [low, high]."""
    found = []
    for feature, rows in groups.items():
        for group, row in rows.items():
            coverage = row.get("coverage")
            if coverage is not None and int(row["count"]) >= min_rows and not low <= float(coverage) <= high:
                found.append((feature, group, int(row["count"]), float(coverage)))
    return found

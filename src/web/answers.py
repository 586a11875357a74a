"""The prediction answer for one student or many: score, 90 % range, band and factors, as JSON-ready dicts.

The JSON API, the CSV API and the teachers' pages all build their answers here, so the same student gets
the same numbers, band and factors on every channel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from src.pipeline.bands import Bands
from src.pipeline.factors import BASELINE_IS, METHOD
from src.pipeline.predict_pipeline import Predictions, PredictPipeline
from src.schema import ACTIONABLE_FEATURES, FEATURE_NAMES, FEATURES_BY_NAME, NumericFeature

Record = Mapping[str, Any]
_ACTIONABLE_COLUMNS = tuple(FEATURE_NAMES.index(name) for name in ACTIONABLE_FEATURES)


def single_answer(pipeline: PredictPipeline, record: Record, bands: Bands) -> dict[str, Any]:
    """The JSON answer for one validated student."""
    score, low, high, raw = pipeline.predict_one_raw(record)
    low, high = round(low, 1), round(high, 1)
    answer: dict[str, Any] = {
        "math_score": round(score, 1),
        "interval": {"low": low, "high": high, "level": pipeline.level},
        "model_version": pipeline.model_version,
        "band": bands.payload(bands.name(low, high)),
    }
    factors = pipeline.factors
    if factors.available:
        answer["factors"] = {"baseline": factors.baseline, "baseline_is": BASELINE_IS, "method": METHOD,
                             "unclipped_score": raw, "contributions": factors.one(record)}
    else:
        answer["factors"] = None
        answer["factors_reason"] = factors.reason
    return answer


@dataclass(frozen=True)
class BatchAnswer:
    """Many students' answers (JSON-ready items, in order) and the arrays behind them."""

    items: list[dict[str, Any]]
    predictions: Predictions
    bands: np.ndarray  # band names
    contributions: np.ndarray | None  # (n, 7), schema order; None when the model has no factors


def batch_answer(pipeline: PredictPipeline, records: Sequence[Record], bands: Bands) -> BatchAnswer:
    """The answers for validated students, computed as vectors."""
    out = pipeline.predict(records)
    scores, lows, highs = (np.round(a, 1) for a in (out.scores, out.low, out.high))
    names = bands.names(lows, highs)
    payloads = {name: bands.payload(name) for name in set(names.tolist())}
    level = out.level
    factors = pipeline.factors
    contributions = factors.many(records) if factors.available else None
    items: list[dict[str, Any]] = []
    if contributions is None:
        for s, lo, hi, name in zip(scores.tolist(), lows.tolist(), highs.tolist(), names.tolist(), strict=True):
            items.append({"math_score": s, "interval": {"low": lo, "high": hi, "level": level},
                          "band": payloads[name], "factors": None})
    else:
        baseline = factors.baseline
        raws = out.raw.tolist() if out.raw is not None else out.scores.tolist()
        for s, lo, hi, name, raw, row in zip(scores.tolist(), lows.tolist(), highs.tolist(), names.tolist(), raws,
                                             contributions.tolist(), strict=True):
            items.append({"math_score": s, "interval": {"low": lo, "high": hi, "level": level},
                          "band": payloads[name],
                          "factors": {"baseline": baseline, "baseline_is": BASELINE_IS, "method": METHOD,
                                      "unclipped_score": raw, "contributions": dict(zip(FEATURE_NAMES, row,
                                                                                        strict=True))}})
    return BatchAnswer(items, out, names, contributions)


def describe_factor(name: str, value: Any, points: float) -> str:
    """A factor in a teacher's words: 'Writing score 58: -4.1 points against an average student'."""
    feature = FEATURES_BY_NAME[name]
    label = feature.label.split(" (")[0]
    shown = f"{float(value):g}" if isinstance(feature, NumericFeature) else f'"{value}"'
    return f"{label} {shown}: {points:+.1f} points against an average student"


def top_actionable(record: Record, contributions: Sequence[float]) -> tuple[str, float]:
    """The actionable feature (scores, the course) that moves this student's score most, and its points."""
    j = max(_ACTIONABLE_COLUMNS, key=lambda k: abs(contributions[k]))
    return FEATURE_NAMES[j], float(contributions[j])

"""One student's answer when the teacher does not know some background fields: every possible value counted.

A teacher may not know a student's parents' education, group, lunch status or gender. Guessing one value
would be a silent fix; refusing would give the teacher nothing. Instead the answer considers every value the
unknown fields can take:

- the score is the average of the scores over the possible values, each weighted by its share in the
  training split (fields taken independently). For the additive scorer this is exactly the score with the
  unknown feature's contribution at its training average, so its factor is 0 and baseline plus factors
  still equals the unclipped score;
- the range is the union of the 90 % ranges of all possible values: whatever the true value, its own range
  lies inside, so the range still covers the true score at least 90 % of the time. It is wider, honestly;
- the chance of a real score below the cut is the weighted average of the chances over the possible values
  (the mixture of their predictive distributions).

The shares are those recorded in the manifest at training time (``explanation.feature_means``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from src.answers.bands import Bands, band_without_background
from src.answers.factors import BACKGROUND_COLUMNS
from src.answers.model import PredictPipeline
from src.schema import FEATURE_NAMES, FEATURES_BY_NAME, MAY_BE_UNKNOWN, TARGET, CategoricalFeature


class UnknownsUnavailable(ValueError):
    """The model cannot answer with fields not known (its manifest lacks the training split's shares)."""


@dataclass(frozen=True)
class UnknownsAnswer:
    """The answer over every possible value of the unknown fields (scores within 0-100; ``raw`` unclipped)."""

    score: float
    low: float
    high: float
    raw: float
    unknown: tuple[str, ...]
    possibilities: int  # how many combinations of values were scored
    contributions: dict[str, float] | None  # schema order; the unknown fields' are 0 up to rounding
    below_cut: float | None = None  # P(real score < cut), when a cut is given and the model can say
    without_background: str | None = None  # the band with background at its average (exact factors, a cut)


def predict_with_unknowns(
    pipeline: PredictPipeline, known: Mapping[str, Any], unknown: Sequence[str], bands: Bands | None = None
) -> UnknownsAnswer:
    """``known`` holds every other feature, validated; ``unknown`` names background fields not known."""
    unknown = tuple(name for name in FEATURE_NAMES if name in set(unknown))
    if not unknown or any(name not in MAY_BE_UNKNOWN for name in unknown):
        raise ValueError(f"only {', '.join(MAY_BE_UNKNOWN)} may be not known, got {list(unknown)}")
    shares = _shares(pipeline, unknown)
    choices = [tuple(shares[name]) for name in unknown]
    records, weights = [], []
    for values in itertools.product(*choices):
        records.append({**known, **dict(zip(unknown, values, strict=True))})
        weights.append(float(np.prod([shares[n][v] for n, v in zip(unknown, values, strict=True)])))
    w = np.asarray(weights) / np.sum(weights)  # a value never seen in training: in the range, not in the score
    out = pipeline.predict(records)
    raw_scores = out.raw if out.raw is not None else out.scores
    raw = float(w @ raw_scores)
    floor, ceiling = TARGET.minimum, TARGET.maximum
    contributions = None
    below_cut = without = None
    if bands is not None and pipeline.below_cut.available:
        below_cut = float(w @ pipeline.below_cut.many(raw_scores, bands.cut))
    if pipeline.factors.available:
        mean = w @ pipeline.factors.many(records)
        contributions = dict(zip(FEATURE_NAMES, mean.tolist(), strict=True))
        if bands is not None:
            background = float(sum(mean[j] for j in BACKGROUND_COLUMNS))
            without = band_without_background(bands, raw, background, pipeline.half_width)
            if bands.scores_only and pipeline.below_cut.available:  # the background, known or not, sets nothing
                below_cut = pipeline.below_cut.one(raw - background, bands.cut)
    return UnknownsAnswer(
        score=min(max(raw, floor), ceiling),
        low=float(np.min(out.low)),
        high=float(np.max(out.high)),
        raw=raw,
        unknown=unknown,
        possibilities=len(records),
        contributions=contributions,
        below_cut=below_cut,
        without_background=without,
    )


def supports_unknowns(pipeline: PredictPipeline) -> bool:
    """Whether the model's manifest records the shares an answer with fields not known needs."""
    try:
        _shares(pipeline, MAY_BE_UNKNOWN)
    except UnknownsUnavailable:
        return False
    return True


def _shares(pipeline: PredictPipeline, unknown: Sequence[str]) -> dict[str, dict[str, float]]:
    explanation = pipeline.manifest.get("explanation")
    means = explanation.get("feature_means") if isinstance(explanation, Mapping) else None
    if not isinstance(means, Mapping):
        raise UnknownsUnavailable(
            "this model was trained before the training split's shares were recorded; "
            "retrain it to answer with fields not known"
        )
    out: dict[str, dict[str, float]] = {}
    for name in unknown:
        feature = FEATURES_BY_NAME[name]
        assert isinstance(feature, CategoricalFeature)
        recorded = means.get(name)
        if not isinstance(recorded, Mapping) or set(recorded) != set(feature.categories):
            raise UnknownsUnavailable(f"the training split's shares of {name} are not recorded with this model")
        values = {c: float(recorded[c]) for c in feature.categories}  # all of them: the range covers every value
        if not sum(values.values()) > 0:
            raise UnknownsUnavailable(f"the training split has no student with a known {name}")
        out[name] = values
    return out

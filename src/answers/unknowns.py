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

from src.answers.bands import Bands, coded_bands_without_background
from src.answers.columns import coded_reported_bands, compute_answers
from src.answers.factors import background_points
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
    band: str | None = None  # the band of the range as reported (one decimal), when a cut is given


def predict_with_unknowns(
    pipeline: PredictPipeline, known: Mapping[str, Any], unknown: Sequence[str], bands: Bands | None = None
) -> UnknownsAnswer:
    """``known`` holds every other feature, validated; ``unknown`` names background fields not known.

    Every possibility is answered by ``compute_answers`` as one batch; this function only weighs them together.
    """
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
    answers = compute_answers(pipeline, records, bands)
    out = answers.predictions
    raw_scores = out.raw if out.raw is not None else out.scores
    raw = float(w @ raw_scores)
    score = np.clip([raw], TARGET.minimum, TARGET.maximum)
    low, high = np.min(out.low, keepdims=True), np.max(out.high, keepdims=True)
    contributions = None
    below_cut = without = band = None
    if answers.below_cut is not None:
        below_cut = float(w @ answers.below_cut)
    if bands is not None:
        band = str(coded_reported_bands(bands, low, high).text()[0])
    if answers.contributions is not None:
        mean = w @ answers.contributions
        contributions = dict(zip(FEATURE_NAMES, mean.tolist(), strict=True))
        if bands is not None:
            background = background_points(mean[None, :])
            without = str(coded_bands_without_background(bands, np.array([raw]), background, pipeline.half_width).text()[0])
            if bands.scores_only:  # BAND_POLICY: the background, known or not, decides nothing (the chance of
                band = without  # every possibility, from the scores and course alone, is the same already)
    return UnknownsAnswer(
        score=float(score[0]),
        low=float(low[0]),
        high=float(high[0]),
        raw=raw,
        unknown=unknown,
        possibilities=len(records),
        contributions=contributions,
        below_cut=below_cut,
        without_background=without,
        band=band,
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

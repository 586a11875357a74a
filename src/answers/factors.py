"""Why a score is what it is: each feature's contribution in score points against a stated baseline.

For a model that is additive in its inputs (the linear models, compiled into ``AdditiveScorer``) the
decomposition is exact: the score is ``intercept + sum of one term per feature``; each term is centred on
its average over the training split, and the baseline is the mean prediction on the training split. Then
``baseline + sum(contributions) == unclipped score`` up to floating-point rounding (these are the model's
Shapley values with the training split as background). The baseline and the training split's feature
averages are recorded in the manifest at training time (``explanation``); the load checks that they agree
with the model's own terms before factors are offered.

Other model kinds get no factors, with the reason, rather than an approximation presented as exact.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from src.answers.arrays import Coded
from src.answers.fast_path import AdditiveScorer, Scorer
from src.answers.kernels import background_sums
from src.schema import (
    BACKGROUND_FEATURES,
    EVIDENCE_FEATURES,
    FEATURE_NAMES,
    FEATURES_BY_NAME,
    CategoricalFeature,
    NumericFeature,
)
from src.validation import StudentColumns

logger = logging.getLogger(__name__)

AGREEMENT = 1e-6  # the recorded baseline must match the model's own terms to this many points
METHOD = "additive"
BASELINE_IS = "mean prediction on the training split"

Record = Mapping[str, Any]
_EVIDENCE_COLUMNS = tuple(FEATURE_NAMES.index(name) for name in EVIDENCE_FEATURES)
BACKGROUND_COLUMNS = tuple(FEATURE_NAMES.index(name) for name in BACKGROUND_FEATURES)

_REASONS = {
    "knn": "k-nearest neighbours averages similar students; its score has no exact split into per-feature contributions",
    "random_forest": "exact per-feature contributions of tree ensembles need TreeSHAP, which this service does "
    "not install; no approximation is offered in its place",
    "gradient_boosting": "exact per-feature contributions of tree ensembles need TreeSHAP, which this service "
    "does not install; no approximation is offered in its place",
}


@dataclass(frozen=True)
class NoFactors:
    """The loaded model offers no exact factors; ``reason`` says why."""

    reason: str
    available: bool = False


class AdditiveFactors:
    """Exact contributions of an additive scorer, centred on the training split's averages."""

    available = True
    reason = None

    def __init__(
        self, scorer: AdditiveScorer, centres: Mapping[str, float], averages: Mapping[str, float] | None = None
    ) -> None:
        self.scorer = scorer
        self.centres = dict(centres)
        # each score's average on the training split: what a contribution compares the student's score with
        self.averages = dict(averages or {})
        self.baseline = scorer.intercept + sum(self.centres[name] for name in FEATURE_NAMES)
        terms: list[tuple[str, dict[str, float] | None, float, float]] = []
        for name in FEATURE_NAMES:  # schema order: every answer lists the features in the same order
            if name in scorer.contributions:
                terms.append((name, scorer.contributions[name], 0.0, self.centres[name]))
            else:
                terms.append((name, None, scorer.slopes[name], self.centres[name]))
        self.terms = tuple(terms)  # (feature, {category: term} or None, slope, centre), schema order
        # the scorer's constants with these centres, as the compiled arithmetic takes them (src.answers.kernels)
        self.additive = scorer.centred(np.array([self.centres[name] for name in FEATURE_NAMES], dtype=float))

    def columns(self, students: StudentColumns) -> np.ndarray:
        """An (n, 7) array of contributions, columns in schema order: the scorer's terms less their centres."""
        return self.split(students)[1]

    def split(self, students: StudentColumns) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """In one pass: the unclipped scores, the (n, 7) contributions and each row's background part (what
        ``background_points`` gives for those contributions)."""
        return self.scorer.split(students, self.additive)


Factors = AdditiveFactors | NoFactors


def build_factors(scorer: Scorer, manifest: Mapping[str, Any]) -> Factors:
    """Exact factors for an additive scorer whose recorded training summary agrees with it; else the reason."""
    if not isinstance(scorer, AdditiveScorer):
        model = str(manifest.get("model", "this model"))
        return NoFactors(
            _REASONS.get(
                model, f"{model} is not additive in its inputs; no exact per-feature contributions are available for it"
            )
        )
    summary = manifest.get("explanation")
    if not isinstance(summary, Mapping) or not isinstance(summary.get("feature_means"), Mapping):
        return NoFactors(
            "this model was trained before the training split's averages were recorded; retrain it to get factors"
        )
    try:
        centres = _centres(scorer, summary["feature_means"])
        recorded = float(summary["baseline"])
    except (KeyError, TypeError, ValueError) as err:
        return NoFactors(f"the manifest's training summary is unreadable ({err!r})")
    averages = {name: float(summary["feature_means"][name]) for name in EVIDENCE_FEATURES}
    factors = AdditiveFactors(scorer, centres, averages)
    if not abs(factors.baseline - recorded) <= AGREEMENT:
        logger.warning("factors off: baseline %.9f from the model's terms, %.9f recorded", factors.baseline, recorded)
        return NoFactors("the recorded mean prediction on the training split does not match the model's terms")
    return factors


def _centres(scorer: AdditiveScorer, means: Mapping[str, Any]) -> dict[str, float]:
    centres: dict[str, float] = {}
    for name in FEATURE_NAMES:
        if isinstance(FEATURES_BY_NAME[name], CategoricalFeature):
            shares = means[name]
            table = scorer.contributions[name]
            centres[name] = float(sum(float(share) * table[category] for category, share in shares.items()))
        else:
            centres[name] = scorer.slopes[name] * float(means[name])
    return centres


def training_summary(train: Any, baseline: float) -> dict[str, Any]:
    """What training records for factors: the mean prediction and each feature's average on the training split.

    ``train`` is the training split as a DataFrame, ``baseline`` the model's mean prediction on it; categories
    are given as shares, scores as means.
    """
    means: dict[str, Any] = {}
    for name in FEATURE_NAMES:
        feature = FEATURES_BY_NAME[name]
        column = train[name]
        if isinstance(feature, CategoricalFeature):
            counts = column.value_counts()
            means[name] = {c: float(counts.get(c, 0)) / len(column) for c in feature.categories}
        else:
            means[name] = float(column.to_numpy(dtype=float).mean())
    return {"baseline": float(baseline), "baseline_is": BASELINE_IS, "feature_means": means}


def describe_factor(name: str, value: Any, points: float, average: float | None = None) -> str:
    """A score's part in the prediction in a teacher's words: the student's score, the score it is compared with
    (the average of the students the model learned from) and the effect on the prediction, in whole points.

    'Writing score 41 (average 68): lowers the prediction by 20 points'; 'changes the prediction by less than
    half a point' under half a point (never "-0").
    """
    feature = FEATURES_BY_NAME[name]
    label = feature.label.split(" (")[0]
    shown = f"{float(value):g}" if isinstance(feature, NumericFeature) else f'"{value}"'
    compared = "" if average is None else f" (average {round(average):d})"
    return f"{label} {shown}{compared}: {effect_words(points)}"


def effect_words(points: float) -> str:
    """A contribution as its effect on the prediction: 'raises the prediction by 3 points'."""
    whole = round(points)
    if whole == 0:
        return "changes the prediction by less than half a point"
    unit = "point" if abs(whole) == 1 else "points"
    return f"{'raises' if whole > 0 else 'lowers'} the prediction by {abs(whole)} {unit}"


def coded_top_factor(
    students: StudentColumns, contributions: np.ndarray, averages: Mapping[str, float] | None = None
) -> Coded:
    """Per student, the score (reading or writing) that moves the prediction most, in words, as
    ``describe_factor`` says it, as positions in a table of the distinct words.

    The words depend only on the feature and its value (a value's contribution is fixed), so each distinct
    pair is worded once and the rest is a table lookup: a class of a thousand students has a few hundred.
    """
    columns = np.asarray(_EVIDENCE_COLUMNS)
    picked = columns[np.argmax(np.abs(contributions[:, columns]), axis=1)]
    codes = np.empty(students.size, dtype=np.intp)
    tables: list[np.ndarray] = []
    worded = 0
    for j in np.flatnonzero(np.bincount(picked)).tolist():
        name = FEATURE_NAMES[j]
        rows = np.flatnonzero(picked == j)
        if name in students.codes:
            keys = students.codes[name][rows]
        else:  # the exact bits: -0.0 and 0.0 are written differently
            keys = students.numbers[name][rows].view(np.int64)
        inverse, distinct = pd.factorize(keys)  # numbered in order of first appearance
        # so each value's first student is where the running highest number rises
        first = rows[np.flatnonzero(np.concatenate(([True], inverse[1:] > np.maximum.accumulate(inverse)[:-1])))]
        values = students.values(name)
        tables.append(
            np.array(
                [describe_factor(name, values[i], contributions[i, j], (averages or {}).get(name)) for i in first.tolist()],
                dtype=object,
            )
        )
        codes[rows] = inverse + worded
        worded += len(distinct)
    return Coded(codes, np.concatenate(tables) if tables else np.empty(0, dtype=object))


def background_points(contributions: np.ndarray) -> np.ndarray:
    """Per row of an (n, 7) array: the four background details' contributions together (score points), added
    left to right, as ``src.answers.kernels.compute`` adds them (the same compiled function)."""
    contributions = np.require(np.asarray(contributions, dtype=float), requirements=("C", "W"))
    out = np.empty(contributions.shape[0])
    background_sums(contributions, len(BACKGROUND_COLUMNS), out)
    return out

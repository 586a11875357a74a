"""How the answers did once the real math scores are known: per student, per class, per group of students.

Array functions, shared by every channel that can carry a real score (the class list page, the CSV and JSON
APIs, the batch command on both engines) and by the production counters:

- ``outcomes`` compares each prediction with its real score: prediction minus real, inside the 90 % range,
  band right (``None`` where the band made no claim: "could be either side"). A student without a real
  score (blank) has no outcome.
- ``Tally`` holds the sums a summary needs (students, absolute and signed error, inside the range, the band
  table); tallies of parts add up, so a batch is summed chunk by chunk and task by task.
- ``promised`` reads what the loaded model promised on its test split (MAE, bias, coverage, the band table
  for the cut in use), so that a class's figures stand beside it.
- ``coverage_clearly_low`` is the calm flag: the range held clearly less often than its stated level.
- ``band_promise`` makes the test split's band table at training, for every whole cut score.

Only aggregates leave these functions; nothing here writes or logs a student.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from src.answers.bands import (
    ALL_DETAILS,
    BAND_NAMES,
    BAND_WORDS,
    NEEDS_SUPPORT,
    ON_TRACK,
    SCORES_ONLY,
    reported_band_codes,
)
from src.schema import CATEGORICAL_FEATURES, TARGET

REAL_SCORE = "real_math_score"  # the real score as given, never mixed with the prediction (``math_score``)
PREDICTION_MINUS_REAL = "prediction_minus_real"
INSIDE_RANGE = "inside_range"
BAND_RIGHT = "band_right"
OUTCOME_COLUMNS: tuple[str, ...] = (REAL_SCORE, PREDICTION_MINUS_REAL, INSIDE_RANGE, BAND_RIGHT)
BELOW = "below_cut"
AT_OR_ABOVE = "at_or_above_cut"
OUTCOME_NAMES: tuple[str, ...] = (BELOW, AT_OR_ABOVE)
# The calm flag: coverage this low would happen less than once in 100 classes if the range held at its level.
FLAG_P_VALUE = 0.01
# Production: coverage over labeled students below this, with at least that many of them, is a reason to retrain
# (the alert StudentMathRealizedCoverageLow in monitoring/prometheus/alerts.yml uses the same two numbers).
LOW_COVERAGE = 0.85
LOW_COVERAGE_MIN_STUDENTS = 200


@dataclass(frozen=True)
class Outcomes:
    """Per student, in order: which have a real score, and how each prediction did against it."""

    labeled: np.ndarray  # bool: a real score was given
    real: np.ndarray  # float, NaN where none was given
    error: np.ndarray  # prediction minus real, NaN where no real score
    inside: np.ndarray  # bool: the real score lies in the 90 % range (False where no real score)
    below: np.ndarray  # bool: the real score is below the cut (False where no real score or no cut)
    bands: np.ndarray | None  # band names (None: no cut)

    @property
    def band_right(self) -> np.ndarray:
        """True/False where a labeled student's band made a claim (needs support / on track), else None."""
        out = np.full(len(self.real), None, dtype=object)
        if self.bands is None:
            return out
        claims = self.labeled & (self.bands != "uncertain")
        right = ((self.bands == NEEDS_SUPPORT) & self.below) | ((self.bands == ON_TRACK) & ~self.below)
        out[claims] = right[claims]
        return out


def outcomes(
    scores: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    real: np.ndarray,
    bands: np.ndarray | None = None,
    cut: float | None = None,
) -> Outcomes:
    """Predictions (scores, ranges and bands as reported) against real scores (NaN: not given)."""
    real = np.asarray(real, dtype=float)
    labeled = ~np.isnan(real)
    with np.errstate(invalid="ignore"):
        error = np.where(labeled, np.asarray(scores, dtype=float) - real, np.nan)
        inside = labeled & (np.asarray(low, dtype=float) <= real) & (real <= np.asarray(high, dtype=float))
        below = labeled & (real < cut) if cut is not None else np.zeros(len(real), dtype=bool)
    return Outcomes(labeled, real, error, inside, below, None if bands is None else np.asarray(bands, dtype=object))


def outcome_columns(out: Outcomes) -> dict[str, np.ndarray]:
    """The per-student columns (real score, prediction minus real, inside range, band right); None where unlabeled."""
    real = np.where(out.labeled, out.real, None).astype(object)
    error = np.where(out.labeled, out.error, None).astype(object)
    inside = np.where(out.labeled, out.inside, None).astype(object)
    return {REAL_SCORE: real, PREDICTION_MINUS_REAL: error, INSIDE_RANGE: inside, BAND_RIGHT: out.band_right}


def _empty_bands() -> dict[str, dict[str, int]]:
    return {band: dict.fromkeys(OUTCOME_NAMES, 0) for band in BAND_NAMES}


@dataclass(frozen=True)
class Tally:
    """The sums behind a summary; tallies of disjoint sets of students add up to the tally of their union."""

    students: int = 0
    absolute_error: float = 0.0
    error: float = 0.0
    inside: int = 0
    below: int = 0
    bands: Mapping[str, Mapping[str, int]] = field(default_factory=_empty_bands)

    @classmethod
    def of(cls, out: Outcomes) -> Tally:
        labeled = out.labeled
        bands = _empty_bands()
        if out.bands is not None:
            for band in BAND_NAMES:
                mine = labeled & (out.bands == band)
                below = int(np.count_nonzero(mine & out.below))
                bands[band] = {BELOW: below, AT_OR_ABOVE: int(np.count_nonzero(mine)) - below}
        errors = out.error[labeled]
        return cls(
            int(np.count_nonzero(labeled)),
            math.fsum(np.abs(errors).tolist()),
            math.fsum(errors.tolist()),
            int(np.count_nonzero(out.inside)),
            int(np.count_nonzero(out.below)),
            bands,
        )

    def __add__(self, other: Tally) -> Tally:
        bands = {b: {o: self.bands[b][o] + other.bands[b][o] for o in OUTCOME_NAMES} for b in BAND_NAMES}
        return Tally(
            self.students + other.students,
            self.absolute_error + other.absolute_error,
            self.error + other.error,
            self.inside + other.inside,
            self.below + other.below,
            bands,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "students": self.students,
            "absolute_error": self.absolute_error,
            "error": self.error,
            "inside": self.inside,
            "below": self.below,
            "bands": {b: dict(v) for b, v in self.bands.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tally:
        return cls(
            int(data["students"]),
            float(data["absolute_error"]),
            float(data["error"]),
            int(data["inside"]),
            int(data["below"]),
            {b: {o: int(data["bands"][b][o]) for o in OUTCOME_NAMES} for b in BAND_NAMES},
        )

    def summary(self, level: float | None = None) -> dict[str, Any]:
        """Students with a real score, MAE, bias (mean prediction minus real), coverage and the band table.

        With ``level`` (the range's stated level), ``coverage_low`` says whether the range held clearly less
        often than promised (``coverage_clearly_low``).
        """
        n = self.students
        out: dict[str, Any] = {
            "students": n,
            "mae": self.absolute_error / n if n else None,
            "bias": self.error / n if n else None,
            "inside_range": self.inside,
            "coverage": self.inside / n if n else None,
            "below_cut": self.below,
            "bands": {b: dict(v) for b, v in self.bands.items()},
            "band_right": band_right_share(self.bands),
        }
        if level is not None:
            out["coverage_low"] = coverage_clearly_low(n, self.inside, level)
        return out


def band_right_share(bands: Mapping[str, Mapping[str, int]]) -> float | None:
    """Of the students whose band made a claim (needs support, on track), the share for whom it was right."""
    right = bands[NEEDS_SUPPORT][BELOW] + bands[ON_TRACK][AT_OR_ABOVE]
    claims = sum(bands[NEEDS_SUPPORT].values()) + sum(bands[ON_TRACK].values())
    return right / claims if claims else None


def coverage_clearly_low(students: int, inside: int, level: float, p_value: float = FLAG_P_VALUE) -> bool:
    """True when so few real scores fell inside the range that, were the range right ``level`` of the time,
    a class would see this few (or fewer) less than ``p_value`` of the time: the one-sided exact binomial test.

    A class of 27 with a 90 % range is flagged at 19 or fewer inside (P = 0.004), not at 20 (P = 0.015):
    a few misses in a small class are what a 90 % range does.
    """
    if students <= 0:
        return False
    from scipy.special import bdtr  # the binomial distribution's CDF

    return bool(bdtr(inside, students, level) < p_value)


def promised(manifest: Mapping[str, Any], cut: float | None) -> dict[str, Any]:
    """What the model promised on its test split: MAE, bias, coverage, the range's level, and the band table
    for ``cut`` (None when the model was trained before it was recorded, or for a cut that is not a whole score)."""
    test = manifest.get("metrics", {}).get("test", {})
    table = None
    stored = manifest.get("band_outcomes") or {}
    if cut is not None and float(cut).is_integer():
        found = stored.get("by_cut", {}).get(str(int(cut)))
        if found is not None:
            table = {b: {o: int(found[b][o]) for o in OUTCOME_NAMES} for b in BAND_NAMES}
    return {
        "students": (manifest.get("metrics", {}).get("rows") or {}).get("test") or stored.get("students"),
        "mae": test.get("mae"),
        "bias": test.get("bias"),
        "coverage": test.get("interval_coverage"),
        "level": float(manifest["interval"]["level"]) if "interval" in manifest else None,
        "bands": table,
        "band_right": band_right_share(table) if table is not None else None,
    }


def evaluation(tally: Tally, manifest: Mapping[str, Any], cut: float | None) -> dict[str, Any]:
    """A class's or a batch's ``evaluation``: its figures beside the test split's."""
    promise = promised(manifest, cut)
    return {**tally.summary(promise["level"]), "cut": cut, "test_split": promise}


def band_promise(y_true: np.ndarray, raw_predictions: np.ndarray, half_width: float) -> dict[str, Any]:
    """The test split's band table for every whole cut score (0-100), the ranges made as serving reports them."""
    raw = np.asarray(raw_predictions, dtype=float)
    y_true = np.asarray(y_true, dtype=float)
    by_cut: dict[str, Any] = {}
    for cut in range(int(TARGET.minimum), int(TARGET.maximum) + 1):
        names = BAND_WORDS.take(reported_band_codes(raw, half_width, float(cut))[0])
        below = y_true < cut
        by_cut[str(cut)] = {
            b: {
                BELOW: int(np.count_nonzero((names == b) & below)),
                AT_OR_ABOVE: int(np.count_nonzero((names == b) & ~below)),
            }
            for b in BAND_NAMES
        }
    return {"students": len(y_true), "by_cut": by_cut}


def group_tally(students: pd.DataFrame, out: Outcomes) -> dict[str, dict[str, dict[str, Any]]]:
    """Per group of each categorical feature, the labeled students' sums (count, absolute and signed error,
    inside), computed by training's per-group function (``src.components.group_metrics``) and made additive."""
    from src.components.group_metrics import group_metrics

    mask = out.labeled
    if not mask.any():
        return {}
    real = out.real[mask]
    predicted = real + out.error[mask]
    table = group_metrics(students.loc[mask].reset_index(drop=True), real, predicted, 0.0, covered=out.inside[mask])
    sums: dict[str, dict[str, dict[str, Any]]] = {}
    for feature, rows in table.items():
        sums[feature] = {}
        for group, row in rows.items():
            n = int(row["count"])
            sums[feature][group] = {
                "count": n,
                "absolute_error": (row["mae"] or 0.0) * n,
                "error": (row["bias"] or 0.0) * n,
                "inside": round((row["coverage"] or 0.0) * n),
            }
    return sums


def add_group_tallies(a: Mapping[str, Any] | None, b: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """The sum of two ``group_tally`` results (``a`` may be None: nothing yet)."""
    if not b:
        return {f: {g: dict(row) for g, row in rows.items()} for f, rows in (a or {}).items()}
    if not a:
        return {f: {g: dict(row) for g, row in rows.items()} for f, rows in b.items()}
    return {
        f: {g: {k: a[f][g][k] + b[f][g][k] for k in ("count", "absolute_error", "error", "inside")} for g in rows}
        for f, rows in b.items()
    }


def group_summary(sums: Mapping[str, Any] | None, small: int | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """``group_tally`` sums as training's per-group table: count, mae, bias, coverage, small."""
    from src.components.group_metrics import SMALL_GROUP

    small = SMALL_GROUP if small is None else small
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for feature in CATEGORICAL_FEATURES:
        out[feature.name] = {}
        for group in feature.categories:
            row = (sums or {}).get(feature.name, {}).get(group) or {"count": 0}
            n = int(row["count"])
            out[feature.name][group] = {
                "count": n,
                "mae": row["absolute_error"] / n if n else None,
                "bias": row["error"] / n if n else None,
                "coverage": row["inside"] / n if n else None,
                "small": n < small,
            }
    return out


def realized_coverage_low(students: float, inside: float) -> bool:
    """Production's rule: coverage below ``LOW_COVERAGE`` over at least ``LOW_COVERAGE_MIN_STUDENTS`` labeled
    students (fewer are too few to tell a model that got worse from a few unlucky classes)."""
    return students >= LOW_COVERAGE_MIN_STUDENTS and inside < LOW_COVERAGE * students


def realized_report(totals: Mapping[str, Any], manifest: Mapping[str, Any] | None) -> dict[str, Any]:
    """The production counters' sums (``RealizedMetrics.totals``) as figures beside the test split's."""
    n = float(totals.get("students", 0.0))

    def figures(row: Mapping[str, Any]) -> dict[str, Any]:
        count = float(row.get("students", 0.0))
        return {
            "students": int(count),
            "mae": row["absolute_error"] / count if count else None,
            "coverage": row["inside"] / count if count else None,
            "below_cut": int(row.get("below_cut", 0.0)),
        }

    test = (manifest or {}).get("metrics", {}).get("test", {})
    return {
        "available": n > 0,
        **figures(totals),
        "groups": {f: {g: figures(row) for g, row in rows.items()} for f, rows in totals.get("groups", {}).items()},
        "test_split": {"mae": test.get("mae"), "coverage": test.get("interval_coverage")},
        "coverage_low": realized_coverage_low(n, float(totals.get("inside", 0.0))),
        "rule": f"coverage below {LOW_COVERAGE:g} over at least {LOW_COVERAGE_MIN_STUDENTS} labeled students",
    }


def policy_misses(
    students: pd.DataFrame,
    y_true: np.ndarray,
    raw_predictions: np.ndarray,
    background: np.ndarray | None,
    half_width: float,
    cut: float,
) -> dict[str, Any]:
    """Per group of each categorical feature of held-out students: how many there are, how many really scored
    below ``cut``, and under each band policy (``all_details``: the prediction from every detail;
    ``scores_only``: with the background details at their training average, ``raw - background``) how many were
    flagged "needs support" and how many of those really below were missed (put "on track"). ``background`` None
    (no exact factors): the scores-only figures are None. Ranges made as serving reports them."""
    raw = np.asarray(raw_predictions, dtype=float)
    below = np.asarray(y_true, dtype=float) < cut
    with_background, without = reported_band_codes(raw, half_width, cut, background)
    named = {
        ALL_DETAILS: BAND_WORDS.take(with_background),
        SCORES_ONLY: None if without is None else BAND_WORDS.take(without),
    }

    def figures(mask: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {"students": int(mask.sum()), "below_cut": int((mask & below).sum())}
        for policy, names in named.items():
            out[policy] = (
                None
                if names is None
                else {
                    "flagged": int((mask & (names == NEEDS_SUPPORT)).sum()),
                    "missed": int((mask & below & (names == ON_TRACK)).sum()),
                }
            )
        return out

    everyone = np.ones(len(raw), dtype=bool)
    groups = {
        feature.name: {
            category: figures(students[feature.name].to_numpy(dtype=object) == category) for category in feature.categories
        }
        for feature in CATEGORICAL_FEATURES
    }
    return {"cut": cut, "all": figures(everyone), "groups": groups}

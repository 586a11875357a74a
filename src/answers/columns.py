"""The answer for each student, computed once, as columns, for every channel that answers many students.

``compute_answers`` is the one place where many students' answers are made, from checked students given
as columns (``StudentColumns``): the predicted math score, its 90 % range, the support band (the rule of
``src.answers.bands`` on the range as reported), the chance of a real score below the cut
(``src.answers.below_cut``), the band the student would get with the background details at their training
average, the exact per-feature contributions and the stronger score (the evidence) in words. Every step is an
array operation; the words come from a table of the distinct values. The JSON and CSV API
(``src.web.answers``, ``src.web.roster``) render it as JSON; the batch command (local and Spark) and the MLflow
model as rows with ``answers_frame``, whose columns are ``ANSWER_FIELDS``: a new
answer column is one entry there. The values are unrounded here; ``round_as_python`` and
``json_predictions`` round them exactly as the JSON API reports them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from src.answers.arrays import Coded, repeated
from src.answers.bands import Bands, coded_bands_without_background
from src.answers.factors import background_points, coded_top_factor
from src.answers.model import Predictions, PredictPipeline
from src.schema import FEATURE_NAMES
from src.validation import StudentColumns

MATH_SCORE = "math_score"
LOW = "interval_low"
HIGH = "interval_high"
LEVEL = "interval_level"
MODEL_VERSION = "model_version"
BAND = "band"
BELOW_CUT = "below_cut_probability"
WITHOUT_BACKGROUND = "band_without_background"
DECISION_COLUMNS: tuple[str, ...] = (BAND, BELOW_CUT, WITHOUT_BACKGROUND)  # with a cut score
PROBABILITY_DECIMALS = 3  # the chance as the JSON API and the CSV report it
ANSWER_COLUMNS: tuple[str, ...] = (MATH_SCORE, LOW, HIGH, LEVEL, MODEL_VERSION)
BASELINE = "factors_baseline"
TOP_FACTOR = "top_factor"
FACTOR_COLUMNS: tuple[str, ...] = tuple(f"factor_{name}" for name in FEATURE_NAMES)  # schema order

Students = Sequence[Mapping[str, Any]] | pd.DataFrame | StudentColumns


@dataclass(frozen=True)
class Answers:
    """Many students' answers, unrounded, in input order, as arrays."""

    students: StudentColumns
    predictions: Predictions
    model_version: str
    coded_bands: Coded | None  # the bands, or None when no cut score was given
    contributions: np.ndarray | None  # (n, 7) score points, schema order; None when the model has no factors
    baseline: float | None  # what the contributions add to (None without factors)
    below_cut: np.ndarray | None = None  # P(real score < cut); None without a cut or a predictive distribution
    coded_without_background: Coded | None = None  # the bands with background at its average; None: no factors
    averages: Mapping[str, float] | None = None  # each score's training average (what the evidence compares with)

    @property
    def size(self) -> int:
        return self.students.size

    @functools.cached_property
    def bands(self) -> np.ndarray | None:
        """Band names, or None when no cut score was given."""
        return None if self.coded_bands is None else self.coded_bands.text()

    @functools.cached_property
    def without_background(self) -> np.ndarray | None:
        """Band names with the background details at their average; None without a cut or exact factors."""
        return None if self.coded_without_background is None else self.coded_without_background.text()

    @functools.cached_property
    def coded_top_factor(self) -> Coded | None:
        """``top_factor`` as a table of words (None when the model has no factors)."""
        return None if self.contributions is None else coded_top_factor(self.students, self.contributions, self.averages)

    @functools.cached_property
    def top_factor(self) -> np.ndarray:
        """Each student's stronger score (reading or writing) in words ("" when the model has no factors)."""
        coded = self.coded_top_factor
        return repeated("", self.size) if coded is None else coded.text()


def compute_answers(
    pipeline: PredictPipeline, students: Students, bands: Bands | None, *, with_factors: bool = True
) -> Answers:
    """Checked students (columns, a typed frame or records) -> their answers, as arrays.

    With a cut score, the chance below it and, for a model with exact factors, the band without background
    (the contributions are then computed even with ``with_factors=False``, which only leaves them out).
    """
    columns = as_columns(students)
    out = pipeline.predict_columns(columns)
    names = None if bands is None else coded_reported_bands(bands, out.low, out.high)
    factors = pipeline.factors
    needed = factors.available and (with_factors or bands is not None)
    contributions = factors.columns(columns) if needed else None  # type: ignore[union-attr]
    available = with_factors and factors.available
    baseline = factors.baseline if available else None  # type: ignore[union-attr]
    below_cut = without = None
    if bands is not None:
        raw = out.raw if out.raw is not None else out.scores
        background = None if contributions is None else background_points(contributions)
        if contributions is not None:
            without = coded_bands_without_background(bands, raw, background, pipeline.half_width)
            if bands.scores_only:  # the band and the chance from the scores and course alone
                names, raw = without, raw - background
        if pipeline.below_cut.available:
            below_cut = pipeline.below_cut.many(raw, bands.cut)  # type: ignore[union-attr]
    averages = factors.averages if available else None  # type: ignore[union-attr]
    return Answers(
        columns,
        out,
        pipeline.model_version,
        names,
        contributions if available else None,
        baseline,
        below_cut,
        without,
        averages,
    )


@dataclass(frozen=True)
class AnswerField:
    """One column of the answer rows: its name, its type in files and Spark, and how it is read off the answers.

    ``values``: a number column as an array, a text column (``"string"``) as a table of words (``Coded``);
    ``needs``: ``"band"`` (only with a cut score) or ``"factors"`` (only when factors are asked for).
    """

    name: str
    kind: str  # "double" | "string"
    values: Callable[[Answers], np.ndarray | Coded]
    needs: str | None = None


def _factor(j: int) -> Callable[[Answers], np.ndarray]:
    return lambda a: np.full(a.size, np.nan) if a.contributions is None else a.contributions[:, j]


def _or_empty(words: Coded | None, size: int) -> Coded:
    """A text column the answers may lack (no factors): empty text, not missing."""
    return Coded.one("", size) if words is None else words


ANSWER_FIELDS: tuple[AnswerField, ...] = (
    AnswerField(MATH_SCORE, "double", lambda a: a.predictions.scores),
    AnswerField(LOW, "double", lambda a: a.predictions.low),
    AnswerField(HIGH, "double", lambda a: a.predictions.high),
    AnswerField(LEVEL, "double", lambda a: np.full(a.size, a.predictions.level, dtype=float)),
    AnswerField(MODEL_VERSION, "string", lambda a: Coded.one(a.model_version, a.size)),
    AnswerField(BAND, "string", lambda a: a.coded_bands, needs="band"),  # type: ignore[arg-type,return-value]
    AnswerField(
        BELOW_CUT, "double", lambda a: np.full(a.size, np.nan) if a.below_cut is None else a.below_cut, needs="band"
    ),
    AnswerField(WITHOUT_BACKGROUND, "string", lambda a: _or_empty(a.coded_without_background, a.size), needs="band"),
    AnswerField(
        BASELINE, "double", lambda a: np.full(a.size, np.nan if a.baseline is None else a.baseline), needs="factors"
    ),
    *(AnswerField(column, "double", _factor(j), needs="factors") for j, column in enumerate(FACTOR_COLUMNS)),
    AnswerField(TOP_FACTOR, "string", lambda a: _or_empty(a.coded_top_factor, a.size), needs="factors"),
)
FIELD_KINDS: dict[str, str] = {f.name: f.kind for f in ANSWER_FIELDS}


def answer_fields(*, band: bool, factors: bool) -> tuple[AnswerField, ...]:
    """The answer columns given with (or without) a band and factors, in their order."""
    wanted = {None, *(["band"] if band else []), *(["factors"] if factors else [])}
    return tuple(f for f in ANSWER_FIELDS if f.needs in wanted)


def answers_columns(answers: Answers, *, with_factors: bool = True, coded: bool = False) -> dict[str, np.ndarray | Coded]:
    """The answer rows as named arrays (``ANSWER_FIELDS`` order); with ``coded``, the text columns as tables of
    words (``Coded``), for writers that build columns from them."""
    fields = answer_fields(band=answers.coded_bands is not None, factors=with_factors)
    out: dict[str, np.ndarray | Coded] = {}
    for field in fields:
        values = field.values(answers)
        out[field.name] = values.text() if field.kind == "string" and not coded else values  # type: ignore[union-attr]
    return out


def answers_frame(
    pipeline: PredictPipeline, students: Students, *, support_cut: float | None = None, with_factors: bool = True
) -> pd.DataFrame:
    """Checked students (columns, records or a frame with the schema's columns) -> one answer row each, in order.

    Columns: ``ANSWER_COLUMNS``, then ``DECISION_COLUMNS`` when ``support_cut`` is given (the chance is NaN
    for a model without recorded residuals, the band without background empty for a model without exact
    factors; the reasons are ``pipeline.below_cut.reason`` and ``pipeline.factors.reason``), then with
    ``with_factors``: ``factors_baseline``, one ``factor_<feature>`` per feature (score points against the
    baseline; baseline plus their sum is the unclipped score) and ``top_factor``, the score (reading or
    writing: the evidence) that moves the prediction most, in the teacher's words of the class list. A model
    without exact factors leaves them empty (the reason is ``pipeline.factors.reason``). Not rounded.
    """
    answers = compute_answers(
        pipeline, students, None if support_cut is None else Bands(support_cut), with_factors=with_factors
    )
    return pd.DataFrame(answers_columns(answers, with_factors=with_factors))


def coded_reported_bands(bands: Bands, low: np.ndarray, high: np.ndarray) -> Coded:
    """The band rule (``src.answers.bands``) on the range as the API reports it (one decimal), as positions in
    ``BAND_NAMES``."""
    return bands.coded(np.round(np.asarray(low, dtype=float), 1), np.round(np.asarray(high, dtype=float), 1))


def round_as_python(values: np.ndarray, decimals: int) -> np.ndarray:
    """``round(v, decimals)`` of Python for every value, as one array operation.

    NumPy rounds ``v * 10**decimals`` to an integer, which agrees with Python's correctly rounded decimal
    unless that product lands within its rounding error of a half; those few values are rounded by Python.
    """
    values = np.asarray(values, dtype=float)
    scaled = values * 10.0**decimals
    out = np.round(values, decimals)
    near_half = np.abs(np.abs(scaled - np.trunc(scaled)) - 0.5) < 1e-3
    if near_half.any():
        out[near_half] = [round(v, decimals) for v in values[near_half].tolist()]
    return out


def json_predictions(answers: pd.DataFrame) -> list[dict[str, Any]]:
    """The JSON API's per-student answers: score and range rounded to one decimal, the level as it is, the
    chance below the cut to ``PROBABILITY_DECIMALS``; the band without background only where there is one."""
    scores, lows, highs = (np.round(answers[c].to_numpy(dtype=float), 1).tolist() for c in (MATH_SCORE, LOW, HIGH))
    levels = answers[LEVEL].to_numpy(dtype=float).tolist()
    out = [
        {"math_score": s, "interval": {"low": lo, "high": hi, "level": lv}}
        for s, lo, hi, lv in zip(scores, lows, highs, levels, strict=True)
    ]
    if BAND in answers.columns:
        chances = round_as_python(answers[BELOW_CUT].to_numpy(dtype=float), PROBABILITY_DECIMALS).tolist()
        for item, band, chance, without in zip(
            out, answers[BAND].tolist(), chances, answers[WITHOUT_BACKGROUND].tolist(), strict=True
        ):
            item[BAND] = band
            if chance == chance:  # not NaN: the model has a predictive distribution
                item[BELOW_CUT] = chance
            if without:
                item[WITHOUT_BACKGROUND] = without
    return out


def as_columns(students: Students) -> StudentColumns:
    """Checked students as columns, whichever form they come in."""
    if isinstance(students, StudentColumns):
        return students
    if isinstance(students, pd.DataFrame):
        return StudentColumns.from_frame(students)
    return StudentColumns.from_records(students)

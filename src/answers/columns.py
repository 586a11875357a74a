"""The answer for each student, computed once, as columns, for every channel: ``compute_answers``.

``compute_answers`` is the one place where an answer is made, for one student (a batch of one) or many, from
checked students given as columns (``StudentColumns``): the predicted math score, its 90 % range, the support
band (the rule of ``src.answers.bands`` on the range as reported), the chance of a real score below the cut
(``src.answers.below_cut``), the band the student would get with the background details at their training
average, the exact per-feature contributions and the stronger score (the evidence) in words. The numbers come
from one compiled pass over the students (``src.answers.kernels``); the words from a table of the distinct
values. The values are unrounded here.

``ANSWER_FIELDS`` is the one table of the answer's fields: each says how it is read off the answers, its type
in files and Spark, where the JSON answer puts it and how many decimals it keeps. The JSON answers (one student
and many, ``src.web.answers``), the class list's CSV (``src.web.roster``), both batch engines and the MLflow
model (rows: ``answers_columns``, ``answers_frame``) render it; a new answer field is one entry there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from src.answers.arrays import SCORE_DECIMALS, Coded, repeated, reported_scores
from src.answers.bands import BAND_WORDS, Bands
from src.answers.factors import coded_top_factor
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
PROBABILITY_DECIMALS = 3  # the chance as the JSON API and the CSV report it
BASELINE = "factors_baseline"
UNCLIPPED = "unclipped_score"  # what the baseline and the contributions add up to (JSON only)
FACTOR_DECIMALS = 8  # short to send; baseline + sum(contributions) still equals the unclipped score within 1e-6
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
    factors = pipeline.factors
    scores_only = bands is not None and bands.scores_only
    done = pipeline.answer_arrays(
        columns,
        None if bands is None else bands.cut,
        scores_only=scores_only,
        contributions=factors.available and (with_factors or bands is not None),
    )
    numbers, codes, contributions = done.numbers, done.bands, done.contributions
    out = Predictions(scores=numbers[0], low=numbers[1], high=numbers[2], level=pipeline.level, raw=done.raw)
    available = with_factors and factors.available
    baseline = factors.baseline if available else None  # type: ignore[union-attr]
    names = below_cut = without = None
    if bands is not None:  # banded on the ranges as reported; without the background part too, with factors
        names = Coded(codes[0], BAND_WORDS)
        if contributions is not None:
            without = Coded(codes[1], BAND_WORDS)
            if scores_only:  # the band (and the chance) from the scores and course alone
                names = without
        if pipeline.below_cut.available:
            below_cut = numbers[5]
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
    """One answer field: its name, its type in files and Spark, how it is read off the answers, and where each
    renderer puts it. The one table of them, ``ANSWER_FIELDS``, is what every channel renders.

    ``values``: a number column as an array, a text column (``"string"``) as a table of words (``Coded``); None
    when these answers lack it (a model without factors or recorded residuals). ``needs``: ``"band"`` (only with
    a cut score) or ``"factors"`` (only when factors are asked for). ``json``: the keys leading to it in a JSON
    answer (None: not in JSON); ``decimals``: how many the JSON answer and the pages report; ``row``: whether it
    is a column of the answer rows (files, Spark, the MLflow model); ``each``: for a value every student of
    the answers shares (the model version, the range's level, the factors' baseline), that one value (None when
    these answers lack it), which a renderer may take once instead of reading a column.
    """

    name: str
    kind: str  # "double" | "string"
    values: Callable[[Answers], np.ndarray | Coded | None]
    needs: str | None = None
    json: tuple[str, ...] | None = None
    decimals: int | None = None
    row: bool = True
    each: Callable[[Answers], Any] | None = None


def _factor(j: int) -> Callable[[Answers], np.ndarray | None]:
    return lambda a: None if a.contributions is None else a.contributions[:, j]


ANSWER_FIELDS: tuple[AnswerField, ...] = (
    AnswerField(MATH_SCORE, "double", lambda a: a.predictions.scores, json=(MATH_SCORE,), decimals=SCORE_DECIMALS),
    AnswerField(LOW, "double", lambda a: a.predictions.low, json=("interval", "low"), decimals=SCORE_DECIMALS),
    AnswerField(HIGH, "double", lambda a: a.predictions.high, json=("interval", "high"), decimals=SCORE_DECIMALS),
    AnswerField(
        LEVEL,
        "double",
        lambda a: np.full(a.size, a.predictions.level),
        json=("interval", "level"),
        each=lambda a: float(a.predictions.level),
    ),
    AnswerField(
        MODEL_VERSION,
        "string",
        lambda a: Coded.one(a.model_version, a.size),
        json=(MODEL_VERSION,),
        each=lambda a: a.model_version,
    ),
    AnswerField(BAND, "string", lambda a: a.coded_bands, needs="band", json=(BAND,)),
    AnswerField(BELOW_CUT, "double", lambda a: a.below_cut, needs="band", json=(BELOW_CUT,), decimals=PROBABILITY_DECIMALS),
    AnswerField(
        WITHOUT_BACKGROUND, "string", lambda a: a.coded_without_background, needs="band", json=(WITHOUT_BACKGROUND,)
    ),
    AnswerField(
        BASELINE,
        "double",
        lambda a: None if a.baseline is None else np.full(a.size, a.baseline),
        needs="factors",
        json=("factors", "baseline"),
        decimals=FACTOR_DECIMALS,
        each=lambda a: None if a.baseline is None else float(a.baseline),
    ),
    AnswerField(
        UNCLIPPED,
        "double",
        lambda a: None if a.contributions is None else a.predictions.raw,
        needs="factors",
        json=("factors", UNCLIPPED),
        decimals=FACTOR_DECIMALS,
        row=False,
    ),
    *(
        AnswerField(
            column, "double", _factor(j), needs="factors", json=("factors", "contributions", name), decimals=FACTOR_DECIMALS
        )
        for j, (column, name) in enumerate(zip(FACTOR_COLUMNS, FEATURE_NAMES, strict=True))
    ),
    AnswerField(TOP_FACTOR, "string", lambda a: a.coded_top_factor, needs="factors"),
)
ANSWER_COLUMNS: tuple[str, ...] = tuple(f.name for f in ANSWER_FIELDS if f.row and f.needs is None)  # always given
DECISION_COLUMNS: tuple[str, ...] = tuple(f.name for f in ANSWER_FIELDS if f.row and f.needs == "band")  # with a cut
FIELD_KINDS: dict[str, str] = {f.name: f.kind for f in ANSWER_FIELDS if f.row}  # each row column's type


def answer_fields(*, band: bool, factors: bool) -> tuple[AnswerField, ...]:
    """The columns of the answer rows given with (or without) a band and factors, in their order."""
    wanted = {None, *(["band"] if band else []), *(["factors"] if factors else [])}
    return tuple(f for f in ANSWER_FIELDS if f.row and f.needs in wanted)


def answers_columns(answers: Answers, *, with_factors: bool = True, coded: bool = False) -> dict[str, np.ndarray | Coded]:
    """The answer rows as named arrays (``ANSWER_FIELDS`` order); with ``coded``, the text columns as tables of
    words (``Coded``), for writers that build columns from them."""
    fields = answer_fields(band=answers.coded_bands is not None, factors=with_factors)
    out: dict[str, np.ndarray | Coded] = {}
    for field in fields:
        values = field.values(answers)
        if values is None:  # a field these answers lack: an empty text or NaN in every row, not a missing column
            values = Coded.one("", answers.size) if field.kind == "string" else np.full(answers.size, np.nan)
        out[field.name] = values.text() if isinstance(values, Coded) and not coded else values
    return out


def answers_frame(
    pipeline: PredictPipeline, students: Students, *, support_cut: float | None = None, with_factors: bool = True
) -> pd.DataFrame:
    """Checked students (columns, records or a frame with the schema's columns) -> one answer row each, in order.

    The columns are the row fields of ``ANSWER_FIELDS`` (``answer_fields``): the score, its range and level and the
    model version; with ``support_cut``, the band, the chance below the cut (NaN for a model without recorded
    residuals: ``pipeline.below_cut.reason``) and the band without background (empty without exact factors); with
    ``with_factors``, the baseline, one ``factor_<feature>`` per feature (baseline plus their sum is the unclipped
    score) and ``top_factor`` (NaN and empty for a model without exact factors: ``pipeline.factors.reason``).
    Not rounded.
    """
    answers = compute_answers(
        pipeline, students, None if support_cut is None else Bands(support_cut), with_factors=with_factors
    )
    return pd.DataFrame(answers_columns(answers, with_factors=with_factors))


def coded_reported_bands(bands: Bands, low: np.ndarray, high: np.ndarray) -> Coded:
    """The band rule (``src.answers.bands``) on the range as every channel reports it (one decimal), as positions in
    ``BAND_NAMES``."""
    low, high = reported_scores(np.vstack((low, high)))
    return bands.coded(low, high)


def as_columns(students: Students) -> StudentColumns:
    """Checked students as columns, whichever form they come in."""
    if isinstance(students, StudentColumns):
        return students
    if isinstance(students, pd.DataFrame):
        return StudentColumns.from_frame(students)
    return StudentColumns.from_records(students)

"""The prediction answer for one student or many as JSON-ready dicts: score, 90 % range, band, the chance of a
real score below the cut, the band without background (exact factors only) and factors.

The JSON API, the CSV API and the teachers' pages all build their answers here, so the same student gets
the same numbers, band and factors on every channel.
"""

from __future__ import annotations

import gc
import itertools
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from src.answers.bands import Bands, band_without_background
from src.answers.columns import (
    BELOW_CUT,
    PROBABILITY_DECIMALS,
    WITHOUT_BACKGROUND,
    Answers,
    Students,
    compute_answers,
    round_as_python,
)
from src.answers.evaluation import (
    BAND_RIGHT,
    INSIDE_RANGE,
    PREDICTION_MINUS_REAL,
    REAL_SCORE,
    Outcomes,
    Tally,
    evaluation,
    outcome_columns,
    outcomes,
)
from src.answers.factors import BACKGROUND_COLUMNS, AdditiveFactors
from src.answers.model import Predictions, PredictPipeline
from src.schema import FEATURE_NAMES, TARGET

Record = Mapping[str, Any]
# Factors are given to 8 decimals: short to send, and baseline + sum(contributions) still equals the unclipped
# score to within 9 x 5e-9 points, far inside the promised 1e-6.
DECIMALS = 8


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
    decided_by = raw  # the prediction that decides the band and the chance (BAND_POLICY)
    if factors.available:
        contributions = factors.one(record)
        background = sum(contributions[FEATURE_NAMES[j]] for j in BACKGROUND_COLUMNS)
        without = band_without_background(bands, raw, background, pipeline.half_width)
        if bands.scores_only:
            answer["band"], decided_by = bands.payload(without), raw - background
    if pipeline.below_cut.available:
        answer[BELOW_CUT] = round(pipeline.below_cut.one(decided_by, bands.cut), PROBABILITY_DECIMALS)
    else:
        answer["below_cut_reason"] = pipeline.below_cut.reason
    if factors.available:
        answer[WITHOUT_BACKGROUND] = without
        answer["factors"] = {
            "baseline": round(factors.baseline, DECIMALS),
            "unclipped_score": round(raw, DECIMALS),
            "contributions": {k: round(v, DECIMALS) for k, v in contributions.items()},
        }
    else:
        answer["factors"] = None
        answer["factors_reason"] = factors.reason
    return answer


@dataclass(frozen=True)
class BatchAnswer:
    """Many students' answers (JSON-ready items, in order) and the arrays behind them."""

    items: list[dict[str, Any]]
    answers: Answers

    @property
    def predictions(self) -> Predictions:
        return self.answers.predictions

    @property
    def contributions(self) -> np.ndarray | None:
        return self.answers.contributions

    @property
    def bands(self) -> np.ndarray:
        return self.answers.bands  # type: ignore[return-value]  # a batch answer always has a cut


def batch_answer(pipeline: PredictPipeline, students: Students, bands: Bands) -> BatchAnswer:
    """The answers for checked students: the shared ``compute_answers``, rendered as JSON items.

    Every number is rounded as ``single_answer`` rounds it (Python's round, made columnar by
    ``round_as_python``), so the same student gets the very same numbers on every channel.
    """
    answers = compute_answers(pipeline, students, bands)
    out, names, contributions = answers.predictions, answers.bands, answers.contributions
    assert names is not None  # a cut was given
    scores, lows, highs = (np.round(a, 1).tolist() for a in (out.scores, out.low, out.high))
    names_list = names.tolist()
    payloads = {name: bands.payload(name) for name in set(names_list)}
    level = out.level
    n = len(names_list)
    chances = (
        round_as_python(answers.below_cut, PROBABILITY_DECIMALS).tolist() if answers.below_cut is not None else [None] * n
    )
    withouts = answers.without_background.tolist() if answers.without_background is not None else [None] * n
    if contributions is None:
        items = [
            {
                "math_score": s,
                "interval": {"low": lo, "high": hi, "level": level},
                "band": payloads[name],
                BELOW_CUT: chance,
                "factors": None,
            }
            for s, lo, hi, name, chance in zip(scores, lows, highs, names_list, chances, strict=True)
        ]
    else:
        baseline = round(answers.baseline, DECIMALS)  # type: ignore[arg-type]
        raws = round_as_python(out.raw if out.raw is not None else out.scores, DECIMALS).tolist()
        rounded = round_as_python(contributions, DECIMALS).tolist()
        f0, f1, f2, f3, f4, f5, f6 = FEATURE_NAMES  # unpacked: building each row's dict is the batch's hot loop
        items = [
            {
                "math_score": s,
                "interval": {"low": lo, "high": hi, "level": level},
                "band": payloads[name],
                BELOW_CUT: chance,
                WITHOUT_BACKGROUND: without,
                "factors": {
                    "baseline": baseline,
                    "unclipped_score": raw,
                    "contributions": {f0: c0, f1: c1, f2: c2, f3: c3, f4: c4, f5: c5, f6: c6},
                },
            }
            for s, lo, hi, name, chance, without, raw, (c0, c1, c2, c3, c4, c5, c6) in zip(
                scores, lows, highs, names_list, chances, withouts, raws, rounded, strict=True
            )
        ]
    if answers.below_cut is None:  # a model trained before its residuals were recorded: no chance to give
        for item in items:
            del item[BELOW_CUT]
    return BatchAnswer(items, answers)


@dataclass(frozen=True)
class Evaluated:
    """Answers checked against the real scores: per student (``outcomes``), summed, and the class's summary."""

    outcomes: Outcomes
    tally: Tally
    evaluation: dict[str, Any]


def evaluate_batch(pipeline: PredictPipeline, batch: BatchAnswer, reals: np.ndarray, bands: Bands) -> Evaluated:
    """Compare each answer, as reported (one decimal), with its real score (NaN: blank), and add to each item
    ``real_math_score``, ``prediction_minus_real``, ``inside_range`` and ``band_right`` (None: no real score,
    or a band that made no claim)."""
    out = batch.predictions
    scores, lows, highs = (np.round(a, 1) for a in (out.scores, out.low, out.high))
    checked = outcomes(scores, lows, highs, reals, batch.bands, bands.cut)
    columns = outcome_columns(checked)
    errors = [None if e is None else round(float(e), 2) for e in columns[PREDICTION_MINUS_REAL].tolist()]
    for item, real, error, inside, right in zip(
        batch.items,
        columns[REAL_SCORE].tolist(),
        errors,
        columns[INSIDE_RANGE].tolist(),
        columns[BAND_RIGHT].tolist(),
        strict=True,
    ):
        item[REAL_SCORE] = real
        item[PREDICTION_MINUS_REAL] = error
        item[INSIDE_RANGE] = None if inside is None else bool(inside)
        item[BAND_RIGHT] = None if right is None else bool(right)
    tally = Tally.of(checked)
    return Evaluated(checked, tally, evaluation(tally, pipeline.manifest, bands.cut))


_BULK_LOCK = threading.Lock()
_bulk = {"running": 0, "was_enabled": True}


@contextmanager
def bulk_allocation() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch builds tens of thousands of small dicts and lists.

    Those containers hold no reference cycles and are freed by reference counting when the answer is sent,
    but their sheer number triggers full collections that would scan them again and again. The collector is
    one per process and a worker serves several requests at once (threads): the last batch to finish restores
    the state the first one found.
    """
    with _BULK_LOCK:
        if _bulk["running"] == 0:
            _bulk["was_enabled"] = gc.isenabled()
            gc.disable()
        _bulk["running"] += 1
    try:
        yield
    finally:
        with _BULK_LOCK:
            _bulk["running"] -= 1
            if _bulk["running"] == 0 and _bulk["was_enabled"]:
                gc.enable()


class SingleAnswerText:
    """``json.dumps(single_answer(...))`` for an additive model, from text rendered once per model and cut.

    A single student's answer is the service's hottest path. Each category's contribution is fixed, so its
    JSON text is rendered at the first request; a request then formats only the numbers that depend on the
    scores. The result parses to exactly ``single_answer``'s dict (tested), at a fifth of json.dumps's cost.
    """

    def __init__(self, pipeline: PredictPipeline, bands: Bands) -> None:
        factors = pipeline.factors
        if not isinstance(factors, AdditiveFactors) or not pipeline.below_cut.available:
            raise TypeError("only additive factors (with a predictive distribution) have fixed per-category text")
        self.pipeline = pipeline
        self.below_cut = pipeline.below_cut
        self.bands = bands
        self.half_width = pipeline.half_width
        self.head = '{"math_score": '
        self.level = f', "level": {json.dumps(pipeline.level)}}}, "model_version": {json.dumps(pipeline.model_version)}'
        self.band_text = {name: f', "band": {json.dumps(bands.payload(name))}, "{BELOW_CUT}": ' for name in bands.labels}
        self.without_text = {name: f', "{WITHOUT_BACKGROUND}": {json.dumps(name)}' for name in bands.labels}
        # the four background contributions' sum for every combination of their categories, added in schema
        # order from 0 as single_answer adds them: the very same number, looked up instead of added per request
        self.background_names = tuple(FEATURE_NAMES[j] for j in BACKGROUND_COLUMNS)
        tables = [
            {c: v - centre for c, v in table.items()}  # type: ignore[union-attr]
            for j, (_, table, _, centre) in enumerate(factors.terms)
            if j in BACKGROUND_COLUMNS
        ]
        self.background: dict[tuple[str, ...], float] = {}
        for combination in itertools.product(*(tuple(t) for t in tables)):
            total = 0
            for table, category in zip(tables, combination, strict=True):
                total += table[category]
            self.background[combination] = total
        self.baseline = f', "factors": {{"baseline": {json.dumps(round(factors.baseline, DECIMALS))}, "unclipped_score": '
        self.terms: list[tuple[str, dict[str, str] | None, str, float, float]] = []
        for position, (name, table, slope, centre) in enumerate(factors.terms):
            key = ("" if position == 0 else ", ") + json.dumps(name) + ": "
            fixed = None
            if table is not None:
                fixed = {c: key + json.dumps(round(v - centre, DECIMALS)) for c, v in table.items()}
            self.terms.append((name, fixed, key, slope, centre))

    def render(self, record: Record) -> tuple[str, float]:
        """The answer's JSON text and the reported score."""
        raw = self.pipeline.scorer.score(record)
        half, floor, ceiling = self.half_width, TARGET.minimum, TARGET.maximum
        score = round(min(max(raw, floor), ceiling), 1)
        low = round(min(max(raw - half, floor), ceiling), 1)
        high = round(min(max(raw + half, floor), ceiling), 1)
        bands = self.bands
        background = self.background[tuple(map(record.__getitem__, self.background_names))]
        without = band_without_background(bands, raw, background, half)
        if bands.scores_only:  # BAND_POLICY: the band and the chance from the scores and course alone
            band, chance = without, round(self.below_cut.one(raw - background, bands.cut), PROBABILITY_DECIMALS)
        else:
            band, chance = bands.name(low, high), round(self.below_cut.one(raw, bands.cut), PROBABILITY_DECIMALS)
        parts = [
            self.head,
            repr(score),
            ', "interval": {"low": ',
            repr(low),
            ', "high": ',
            repr(high),
            self.level,
            self.band_text[band],
            repr(chance),
            self.without_text[without],
            self.baseline,
            repr(round(raw, DECIMALS)),
            ', "contributions": {',
        ]
        for name, fixed, key, slope, centre in self.terms:
            if fixed is not None:
                parts.append(fixed[record[name]])
            else:
                parts.append(key + repr(round(slope * record[name] - centre, DECIMALS)))
        parts.append("}}}")
        return "".join(parts), score


_TEXTS: dict[int, SingleAnswerText] = {}


def single_answer_json(pipeline: PredictPipeline, record: Record, bands: Bands) -> tuple[str, float]:
    """One validated student's answer as JSON text, and the reported score."""
    text = _TEXTS.get(id(pipeline))
    if text is None or text.pipeline is not pipeline or text.bands is not bands:
        if not isinstance(pipeline.factors, AdditiveFactors) or not pipeline.below_cut.available:
            answer = single_answer(pipeline, record, bands)
            return json.dumps(answer), answer["math_score"]
        if len(_TEXTS) > 4:  # old models: they are swapped whole, rarely
            _TEXTS.clear()
        text = _TEXTS[id(pipeline)] = SingleAnswerText(pipeline, bands)
    return text.render(record)

"""The JSON answer for one student or many: ``compute_answers``'s columns rendered as JSON-ready dicts.

The JSON API, the CSV API's JSON answer and the teachers' pages all render the same columns here, so the same
student gets the same numbers, band and factors on every channel; one student is a batch of one. Where a field
goes in a JSON answer and how many decimals it keeps are declared with the field, in ``ANSWER_FIELDS``
(``src/answers/columns.py``); this module only follows those declarations.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from src.answers.arrays import Coded
from src.answers.bands import Bands
from src.answers.columns import (
    ANSWER_FIELDS,
    BAND,
    BELOW_CUT,
    MODEL_VERSION,
    AnswerField,
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
from src.answers.model import Predictions, PredictPipeline

Record = Mapping[str, Any]
_JSON_FIELDS = tuple(field for field in ANSWER_FIELDS if field.json is not None)


def _json_words(field: AnswerField, bands: Bands) -> Callable[[np.ndarray], np.ndarray]:
    """How a text field's words are written in JSON: a band as its ``{"name", "label", "cut"}`` object."""
    if field.name == BAND:
        return lambda words: _objects([bands.payload(word) for word in words.tolist()])
    return lambda words: words


def _objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def json_items(answers: Answers, bands: Bands, *, leave_out: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Each student's answer as a JSON-ready dict, in order: every field of ``ANSWER_FIELDS`` that has a JSON place,
    rounded as it declares. A field these answers lack is left out; a group all of whose fields are lacking (the
    factors of a model without exact factors) is null. The rounded fields are rounded together, as one matrix."""
    tree: dict[str, Any] = {}
    rounded: list[tuple[dict[str, Any], str, np.ndarray, int]] = []
    for field in _JSON_FIELDS:
        if field.name in leave_out:
            continue
        *groups, key = field.json  # type: ignore[misc]
        node = tree
        for group in groups:
            node = node.setdefault(group, {})
        values = field.values(answers)
        if values is None:
            continue
        if isinstance(values, Coded):
            node[key] = _json_words(field, bands)(values.words).take(values.codes).tolist()
        elif field.decimals is None:
            node[key] = np.asarray(values, dtype=float).tolist()
        else:
            node[key] = None  # its place, in the declared order; filled below
            rounded.append((node, key, values, field.decimals))
    if rounded:
        matrix = round_as_python(np.vstack([r[2] for r in rounded]), np.array([[r[3]] for r in rounded]))
        for (node, key, _, _), column in zip(rounded, matrix.tolist(), strict=True):
            node[key] = column
    return _rows(tree, answers.size)


def _rows(tree: Mapping[str, Any], size: int) -> list[dict[str, Any]]:
    """Columns (lists, or groups of columns) -> one dict per row; an empty group is null in every row."""
    keys = list(tree)
    columns = [(_rows(v, size) if _holds(v) else [None] * size) if isinstance(v, dict) else v for v in tree.values()]
    # every column holds ``size`` values by construction: zip unchecked, the batch's hottest loop (a fifth faster)
    return [dict(zip(keys, row, strict=False)) for row in zip(*columns, strict=False)]


def _holds(group: Mapping[str, Any]) -> bool:
    """Whether a group holds any field, in itself or in a group within."""
    return any(_holds(v) if isinstance(v, dict) else True for v in group.values())


def single_answer(pipeline: PredictPipeline, record: Record, bands: Bands) -> tuple[dict[str, Any], Answers]:
    """One validated student's JSON answer (a batch of one), with the model version and the reasons for what the
    model cannot say; and the answers it renders."""
    answers = compute_answers(pipeline, [record], bands)
    item = json_items(answers, bands)[0]
    if BELOW_CUT not in item:
        item["below_cut_reason"] = pipeline.below_cut.reason
    if item["factors"] is None:
        item["factors_reason"] = pipeline.factors.reason
    return item, answers


@dataclass(frozen=True)
class BatchAnswer:
    """Many students' answers (JSON-ready items, in order) and the arrays behind them."""

    items: list[dict[str, Any]]
    answers: Answers

    @property
    def predictions(self) -> Predictions:
        return self.answers.predictions

    @property
    def bands(self) -> np.ndarray:
        return self.answers.bands  # type: ignore[return-value]  # a batch answer always has a cut


def batch_answer(pipeline: PredictPipeline, students: Students, bands: Bands) -> BatchAnswer:
    """Checked students' answers as JSON items, the model version said once beside them (not in each item)."""
    answers = compute_answers(pipeline, students, bands)
    return BatchAnswer(json_items(answers, bands, leave_out=(MODEL_VERSION,)), answers)


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
    scores, lows, highs = (round_as_python(a, 1) for a in (out.scores, out.low, out.high))
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

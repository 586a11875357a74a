"""The JSON answer for one student or many: ``compute_answers``'s columns rendered as JSON-ready dicts.

The JSON API, the CSV API's JSON answer and the teachers' pages all render the same columns here, so the same
student gets the same numbers, band and factors on every channel; one student is a batch of one. Where a field
goes in a JSON answer and how many decimals it keeps are declared with the field, in ``ANSWER_FIELDS``
(``src/answers/columns.py``); this module only follows those declarations.
"""

from __future__ import annotations

import functools
import gc
import itertools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from src.answers.arrays import reported_scores
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
from src.answers.kernels import round_rows
from src.answers.model import Predictions, PredictPipeline

Record = Mapping[str, Any]
_JSON_FIELDS = tuple(field for field in ANSWER_FIELDS if field.json is not None)


@dataclass(frozen=True)
class _JsonPlan:
    """How answers with a given set of fields become JSON items, worked out once per set (``_json_plan``).

    The fields' positions (in ``_json_fields``) by how each is rendered, which is also the order of the columns
    ``build`` takes: ``shared`` (one value for every student, ``AnswerField.each``) with its decimals (None: as it
    is), ``band`` (the band object; None when absent), ``words``, ``numbers`` and ``rounded`` (rounded together,
    each with ``10.0 ** decimals`` in ``scales``, what ``src.answers.kernels.round_rows`` takes). ``build``: a
    function of one value per column that returns the item, its keys in declared order, nested as the fields'
    JSON places say, a group all of whose fields are lacking (the factors of a model without exact factors) null.
    """

    shared: tuple[tuple[int, int | None], ...]
    band: int | None
    words: tuple[int, ...]
    numbers: tuple[int, ...]
    rounded: tuple[int, ...]
    scales: np.ndarray
    build: Callable[..., dict[str, Any]]


@functools.lru_cache(maxsize=16)
def _json_fields(leave_out: tuple[str, ...]) -> tuple[AnswerField, ...]:
    """The fields with a JSON place, less those named in ``leave_out``, in declared order."""
    return tuple(field for field in _JSON_FIELDS if field.name not in leave_out)


@functools.lru_cache(maxsize=64)
def _json_plan(present: tuple[bool, ...], leave_out: tuple[str, ...]) -> _JsonPlan:
    """The plan for answers holding the fields of ``_json_fields(leave_out)`` marked in ``present``."""
    tree: dict[str, Any] = {}
    kinds: dict[str, list[int]] = {"shared": [], "band": [], "words": [], "numbers": [], "rounded": []}
    fields = _json_fields(leave_out)
    for position, (field, given) in enumerate(zip(fields, present, strict=True)):
        *groups, key = field.json  # type: ignore[misc]
        node = tree
        for group in groups:
            node = node.setdefault(group, {})
        if not given:
            continue
        node[key] = field.name  # its place, in the declared order
        if field.each is not None:
            kinds["shared"].append(position)
        elif field.name == BAND:
            kinds["band"].append(position)
        elif field.kind == "string":
            kinds["words"].append(position)
        elif field.decimals is None:
            kinds["numbers"].append(position)
        else:
            kinds["rounded"].append(position)
    order = [fields[position].name for positions in kinds.values() for position in positions]
    return _JsonPlan(
        shared=tuple((position, fields[position].decimals) for position in kinds["shared"]),
        band=kinds["band"][0] if kinds["band"] else None,
        words=tuple(kinds["words"]),
        numbers=tuple(kinds["numbers"]),
        rounded=tuple(kinds["rounded"]),
        scales=10.0 ** np.array([fields[position].decimals for position in kinds["rounded"]], dtype=float),
        build=_builder(tree, order),
    )


def _builder(tree: Mapping[str, Any], order: Sequence[str]) -> Callable[..., dict[str, Any]]:
    """A function of one value per column (``order``) returning the nested item ``tree`` describes: one dict
    display per item, the fastest way CPython builds a dict. Its source is made from the declared JSON keys
    alone (constants of ``ANSWER_FIELDS``), never from a request."""

    def display(node: Mapping[str, Any]) -> str | None:
        """The node as a dict display; None when no field is in it, nor in a group within (a null group)."""
        parts = [(key, display(v) if isinstance(v, Mapping) else f"c{order.index(v)}") for key, v in node.items()]
        if all(part is None for _, part in parts):
            return None
        return "{" + ", ".join(f"{key!r}: {part}" for key, part in parts) + "}"

    arguments = ", ".join(f"c{i}" for i in range(len(order)))
    return eval(f"lambda {arguments}: {display(tree) or '{}'}", {})  # noqa: S307 - source from constants only


def json_items(answers: Answers, bands: Bands, *, leave_out: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Each student's answer as a JSON-ready dict, in order: every field of ``ANSWER_FIELDS`` that has a JSON place,
    rounded as it declares. A field these answers lack is left out; a group all of whose fields are lacking (the
    factors of a model without exact factors) is null. The rounded fields are rounded together, as one matrix."""
    leave_out = tuple(leave_out)
    fields = _json_fields(leave_out)
    values = [field.values(answers) if field.each is None else field.each(answers) for field in fields]
    plan = _json_plan(tuple([value is not None for value in values]), leave_out)
    size = answers.size
    columns: list[Any] = [
        itertools.repeat(values[position] if decimals is None else round(values[position], decimals), size)
        for position, decimals in plan.shared
    ]
    if plan.band is not None:  # a band as its {"name", "label", "cut", "policy"} object, one per band
        coded = values[plan.band]
        objects = [bands.payload(word) for word in coded.words.tolist()]
        columns.append([objects[code] for code in coded.codes.tolist()])
    columns += [values[position].words.take(values[position].codes).tolist() for position in plan.words]
    columns += [np.asarray(values[position], dtype=float).tolist() for position in plan.numbers]
    if plan.rounded:  # rounded as Python rounds, all at once
        matrix = np.concatenate([values[position] for position in plan.rounded], dtype=float)
        matrix = matrix.reshape(len(plan.rounded), size)
        round_rows(matrix, plan.scales, matrix)
        columns += matrix.tolist()
    return list(map(plan.build, *columns))


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
    scores, lows, highs = (reported_scores(a) for a in (out.scores, out.low, out.high))
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

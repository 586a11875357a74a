"""The answer's arithmetic, compiled: one pass over the students, whatever their number, no temporary arrays.

``compute`` is the one implementation of the answer's numbers, for one student (a batch of one) and for many:
an additive model's terms (one number per category, a slope times each score), their running sum from the
intercept (the unclipped score), each term less its training centre (the contributions) and the background
details' part (the first contributions, added left to right); the score and its 90 % range within the target's
bounds, the same range with the background part taken away, the bands of both ranges as reported, and the
chance of a real score below the cut from the sorted residuals (``src.answers.below_cut``). ``round_rows`` is
Python's ``round`` for arrays, ``band_codes`` the band rule (``src.answers.bands``) for arrays.

Why compiled: a student's answer was some fifty array operations; NumPy pays about a microsecond of dispatch
for each whatever the array's length, so one student cost far more than the arithmetic. numba compiles these
loops with LLVM into machine code once (cached on disk: ``NUMBA_CACHE_DIR``, else ``__pycache__`` beside this
file), strictly in IEEE order (no fast-math): each sum is added in the order written, as Python adds it.

Nothing is compiled at import. ``warm_up`` compiles (or loads from the cache) every function for the one set of
argument types the callers give (C-contiguous float64 and intp arrays, Python floats, ints and bools; the
wrappers make sure of it): gunicorn's master calls it before it forks, so the workers share the machine code,
and a model's load calls it too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from src.compiled import compiled

NOTHING = np.empty(0)  # an argument not given: no background parts, no residuals


@compiled
def _rounded(value: float, scale: float) -> float:
    """``round(value, d)`` of Python for ``scale = 10.0 ** d``: the exact decimal value of ``value`` rounded to
    ``d`` places, half to even, as the nearest float.

    ``value * scale`` is rounded to the nearest integer (``np.rint``, half to even); the float product can land on
    a half the exact product is not on, so the product's rounding error is recovered exactly (Dekker's product:
    ``value * scale == product + error``) and decides those cases. Exact for ``|value * scale| < 2 ** 52``."""
    product = value * scale
    whole = np.rint(product)
    if abs(product - whole) == 0.5:  # on a half: the exact product may lie to either side of it
        split = 134217729.0 * value  # 2 ** 27 + 1: each factor as the sum of two halves of its bits
        value_high = split - (split - value)
        value_low = value - value_high
        split = 134217729.0 * scale
        scale_high = split - (split - scale)
        scale_low = scale - scale_high
        error = value_high * scale_high - product + value_high * scale_low + value_low * scale_high
        error += value_low * scale_low
        if error > 0.0:
            whole = np.ceil(product)  # -0.5 rounds up to -0.0, as Python's round keeps the sign
        elif error < 0.0:
            whole = np.floor(product)
    return whole / scale


@compiled
def _band(low: float, high: float, cut: float) -> int:
    """The band of one reported range as a position in ``BAND_NAMES`` (needs support, uncertain, on track): the
    whole range below the cut, across it, or all at or above it (``src.answers.bands``)."""
    if high < cut:
        return 0
    if low >= cut:
        return 2
    return 1


@compiled
def round_rows(values: np.ndarray, scales: np.ndarray, out: np.ndarray) -> None:
    """``out[r, i] = round(values[r, i], d_r)`` of Python, each row ``r`` with its ``scales[r] = 10.0 ** d_r``."""
    for r in range(values.shape[0]):
        scale = scales[r]
        for i in range(values.shape[1]):
            out[r, i] = _rounded(values[r, i], scale)


@compiled
def band_codes(lows: np.ndarray, highs: np.ndarray, cut: float, out: np.ndarray) -> None:
    """The band of each reported range (``lows[i]``, ``highs[i]``) against ``cut``, as positions in ``BAND_NAMES``."""
    for i in range(lows.shape[0]):
        out[i] = _band(lows[i], highs[i], cut)


@compiled
def _range(
    centre: float,
    half_width: float,
    minimum: float,
    maximum: float,
    banded: bool,
    cut: float,
    report_scale: float,
    out: np.ndarray,
    row: int,
    bands: np.ndarray,
    band_row: int,
    i: int,
) -> None:
    """The range ``centre -/+ half_width`` within [minimum, maximum] (``+ 0.0``: never a negative zero) into rows
    ``row``, ``row + 1`` of ``out`` and, when ``banded``, the band of the range as reported against ``cut`` into
    ``bands[band_row]`` (column ``i``)."""
    low = min(max(centre - half_width, minimum), maximum) + 0.0
    high = min(max(centre + half_width, minimum), maximum) + 0.0
    out[row, i] = low
    out[row + 1, i] = high
    if banded:
        bands[band_row, i] = _band(_rounded(low, report_scale), _rounded(high, report_scale), cut)


@compiled
def _background_part(contributions: np.ndarray, i: int, background: int) -> float:
    """Student ``i``'s first ``background`` contributions (the background details'), added left to right."""
    part = contributions[i, 0]
    for j in range(1, background):
        part += contributions[i, j]
    return part


@compiled
def background_sums(contributions: np.ndarray, background: int, out: np.ndarray) -> None:
    """``out[i]``: the background part of each row of ``contributions`` (n, features), as ``compute`` adds it."""
    for i in range(contributions.shape[0]):
        out[i] = _background_part(contributions, i, background)


@compiled
def _answers(  # the model's constants are plain arrays, passed as they are
    codes: np.ndarray,
    numbers: np.ndarray,
    table: np.ndarray,
    offsets: np.ndarray,
    slopes: np.ndarray,
    intercept: float,
    centres: np.ndarray,
    background: int,
    half_width: float,
    minimum: float,
    maximum: float,
    banded: bool,
    cut: float,
    chance: bool,
    residuals: np.ndarray,
    chance_without_background: bool,
    report_scale: float,
    raw: np.ndarray,
    contributions: np.ndarray,
    background_points: np.ndarray,
    out: np.ndarray,
    bands: np.ndarray,
) -> None:
    """Per student ``i``, as ``compute`` describes (``banded``: a cut was given; ``chance``: and residuals).

    With category ``codes`` (categories, n) and scores ``numbers`` (scores, n), an additive model's: term ``j``
    of a category is ``table[codes[j, i] + offsets[j]]``, of a score ``slopes[k] * numbers[k, i]``, in schema
    order; ``raw[i]`` is the intercept plus the terms, added one after the other; ``contributions[i, j]`` term
    ``j`` less ``centres[j]``; ``background_points[i]`` the first ``background`` contributions added left to
    right. Without codes (no rows), ``raw`` and, when it has a value per student, ``background_points`` are read
    instead. Then ``out`` (6, n) and ``bands`` (2, n)."""
    categories = codes.shape[0]
    n = raw.shape[0]
    centred_too = categories > 0 or background_points.shape[0] == n
    scale = 2.0 * (residuals.shape[0] + 1)
    for i in range(n):
        if categories > 0:
            total = intercept
            for j in range(categories):
                term = table[codes[j, i] + offsets[j]]
                total += term
                contributions[i, j] = term - centres[j]
            for k in range(numbers.shape[0]):
                term = slopes[k] * numbers[k, i]
                total += term
                contributions[i, categories + k] = term - centres[categories + k]
            raw[i] = total
            background_points[i] = _background_part(contributions, i, background)
        score = raw[i]
        out[0, i] = min(max(score, minimum), maximum) + 0.0
        _range(score, half_width, minimum, maximum, banded, cut, report_scale, out, 1, bands, 0, i)
        centred = score
        if centred_too:
            centred = score - background_points[i]
            _range(centred, half_width, minimum, maximum, banded, cut, report_scale, out, 3, bands, 1, i)
        if chance:
            gap = cut - (centred if chance_without_background else score)
            below = np.searchsorted(residuals, gap, side="left") + np.searchsorted(residuals, gap, side="right") + 1
            out[5, i] = below / scale


@dataclass(frozen=True)
class Additive:
    """An additive model's constants as the compiled pass takes them: each category's term in one flat table
    (``offsets``: where each categorical feature's block starts, schema order), one slope per score, the
    intercept, and the contributions' ``centres`` (zeros: the terms themselves)."""

    table: np.ndarray
    offsets: np.ndarray
    slopes: np.ndarray
    intercept: float
    centres: np.ndarray


@dataclass(frozen=True)
class Computed:
    """What ``compute`` returns: ``numbers`` rows are the score, its range (low, high), the range without the
    background part (low, high), the chance below the cut; ``bands`` rows the band of the range as reported and
    of the range without the background part, as positions in ``BAND_NAMES``. What was not asked for (the range
    without background with no background parts, bands and chance with no cut, contributions with no model)
    holds no value."""

    raw: np.ndarray
    contributions: np.ndarray | None
    background: np.ndarray | None
    numbers: np.ndarray
    bands: np.ndarray


def compute(
    *,
    students: StudentColumnsLike | None = None,
    additive: Additive | None = None,
    raw: np.ndarray | None = None,
    background: np.ndarray | None = None,
    background_features: int = 0,
    half_width: float = 0.0,
    minimum: float = -np.inf,
    maximum: float = np.inf,
    cut: float | None = None,
    residuals: np.ndarray | None = None,
    chance_without_background: bool = False,
    report_scale: float = 1.0,
) -> Computed:
    """The answer's numbers in one compiled pass over the students.

    Either ``students`` (columns with ``code_matrix`` and ``number_matrix``) and an ``additive`` model, whose
    scores, contributions (less ``additive.centres``) and background parts (the first ``background_features``
    contributions) are computed; or unclipped scores ``raw`` (a scorer's) and, optionally, each student's
    ``background`` part. Then: the score and its range ``raw -/+ half_width`` within [minimum, maximum]; the same
    for ``raw - background``; with a ``cut``, the bands of both ranges as reported (rounded as Python rounds to
    ``report_scale = 10 ** decimals``) and, with sorted ``residuals``, the chance below the cut, with ``below``
    residuals under the gap ``cut - raw`` (``cut - (raw - background)`` with ``chance_without_background``) and
    ``at_most`` at or under it: (below + at_most + 1) / (2 (len(residuals) + 1)).
    """
    if additive is not None and students is not None:
        n = students.size
        codes, numbers, model = students.code_matrix, students.number_matrix, additive
        raw, contributions, background = np.empty(n), np.empty((n, len(model.centres))), np.empty(n)
    else:
        raw = _writable(raw)
        n = len(raw)
        codes, numbers, model, contributions = _NO_CODES, _NO_NUMBERS, _NO_MODEL, _NO_CONTRIBUTIONS
        if background is not None:
            background = _writable(background)
            if background.shape != (n,):
                raise ValueError(f"{background.shape} background parts for {n} scores")
    if cut is not None and not math.isfinite(cut):
        raise ValueError(f"the cut must be a finite score, got {cut!r}")
    out, bands = np.empty((6, n)), np.empty((2, n), dtype=np.int8)
    _answers(
        codes,
        numbers,
        model.table,
        model.offsets,
        model.slopes,
        model.intercept,
        model.centres,
        background_features,
        float(half_width),
        float(minimum),
        float(maximum),
        cut is not None,
        np.nan if cut is None else float(cut),
        cut is not None and residuals is not None,
        NOTHING if residuals is None else _writable(residuals),
        bool(chance_without_background),
        float(report_scale),
        raw,
        contributions,
        NOTHING if background is None else background,
        out,
        bands,
    )
    return Computed(raw, None if additive is None else contributions, background, out, bands)


def _writable(values: Any) -> np.ndarray:
    """A C-contiguous, writable float64 array (a copy only when ``values`` is not one already): the one array
    type the compiled pass takes, so that no caller's read-only or strided array makes numba compile again."""
    return np.require(values, dtype=np.float64, requirements=["C", "W"])


_NO_CODES, _NO_NUMBERS = np.zeros((0, 0), dtype=np.intp), np.zeros((0, 0))
_NO_CONTRIBUTIONS = np.zeros((0, 0))
_NO_MODEL = Additive(np.zeros(0), np.zeros(0, dtype=np.intp), np.zeros(0), 0.0, np.zeros(0))


def warm_up() -> None:
    """Compile (or load from the cache) every function for the argument types ``compute`` and the rounding give."""
    one = np.zeros(1)
    model = Additive(np.zeros(30), np.zeros(5, dtype=np.intp), np.zeros(2), 0.0, np.zeros(7))
    students = _Columns(1, np.zeros((5, 1), dtype=np.intp), np.zeros((2, 1)))
    compute(students=students, additive=model, background_features=4, cut=50.0, residuals=np.zeros(2))
    round_rows(np.zeros((1, 1)), np.ones(1), np.zeros((1, 1)))
    band_codes(one, one, 50.0, np.empty(1, dtype=np.int8))
    background_sums(np.zeros((1, 7)), 4, np.empty(1))


def signatures() -> dict[str, int]:
    """How many compiled versions each function holds (one each when every caller passes the declared types)."""
    functions = (_answers, round_rows, band_codes, background_sums)
    return {function.__name__: len(function.signatures) for function in functions}


class StudentColumnsLike(Protocol):
    """What ``compute`` reads of checked students (``src.validation.StudentColumns``)."""

    size: int
    code_matrix: np.ndarray
    number_matrix: np.ndarray


@dataclass(frozen=True)
class _Columns:
    size: int
    code_matrix: np.ndarray
    number_matrix: np.ndarray

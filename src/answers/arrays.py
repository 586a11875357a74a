"""Array helpers shared by the answer columns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from src.answers.kernels import round_rows


def repeated(value: Any, size: int) -> np.ndarray:
    """An object vector holding ``value`` ``size`` times: the one object, never a copy of it.

    ``np.full(size, "text", dtype=object)`` first makes the text a fixed-width string array and converts each
    element back into a new str; filling an empty object vector shares the one value, some 50 times faster.
    """
    out = np.empty(size, dtype=object)
    out.fill(value)
    return out


@dataclass(frozen=True)
class Coded:
    """A text column as positions in a small table of its distinct texts (band names, a top factor's words).

    What the answers compute; the text of every row (``text``) is made only when a channel asks for it, and a
    writer of Arrow columns builds the column from the table without reading each row's string.
    """

    codes: np.ndarray  # one position in ``words`` per row
    words: np.ndarray  # object vector of the distinct texts

    def text(self) -> np.ndarray:
        """The rows' texts, as an object vector (the table's very str objects)."""
        return self.words.take(self.codes)

    def select(self, rows: np.ndarray) -> Coded:
        """Some rows, given as positions or as a boolean mask, with the same table."""
        return Coded(self.codes[rows], self.words)

    @classmethod
    def one(cls, word: Any, size: int) -> Coded:
        """``size`` rows of the one text ``word``."""
        return cls(np.zeros(size, dtype=np.int8), np.array([word], dtype=object))


def round_as_python(values: Any, decimals: Any) -> np.ndarray:
    """``round(v, d)`` of Python for every value (``src.answers.kernels.round_rows``); ``decimals`` is one number
    or one per row of a 2-D ``values`` (a column of them), so that several fields are rounded at once."""
    values = np.asarray(values, dtype=float)
    if values.ndim < 2:  # one row of values
        rows = values.reshape(1, -1)
    else:
        rows = values.reshape(int(np.prod(values.shape[:-1])), values.shape[-1])
    rows = np.array(rows, order="C")  # a writable, contiguous copy: the one type the compiled rounding takes
    places = np.asarray(decimals, dtype=float).reshape(-1)
    if len(places) == 1:
        places = np.repeat(places, len(rows))
    elif len(places) != len(rows):
        raise ValueError(f"{len(places)} decimals for {len(rows)} rows of values")
    out = np.empty_like(rows)
    round_rows(rows, 10.0**places, out)
    return out.reshape(values.shape)


SCORE_DECIMALS = 1  # a math score and its range as every channel reports them (and bands and monitors them)
REPORT_SCALE = 10.0**SCORE_DECIMALS


def reported_scores(values: Any) -> np.ndarray:
    """Scores (or range ends) as every channel reports them: ``round_as_python`` to ``SCORE_DECIMALS``."""
    return round_as_python(values, SCORE_DECIMALS)

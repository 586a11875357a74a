"""Array helpers shared by the answer columns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


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
    """``round(v, d)`` of Python for every value, as a few array operations; ``decimals`` is one number or one per
    row of a 2-D ``values`` (a column of them), so that several fields are rounded at once.

    NumPy rounds ``v * 10**d`` to an integer (``np.rint``), which agrees with Python's correctly rounded decimal
    unless that product lands within its rounding error of a half; those few values are rounded by Python.
    """
    values = np.asarray(values, dtype=float)
    scale = 10.0**decimals if isinstance(decimals, int) else 10.0 ** np.asarray(decimals, dtype=float)
    scaled = values * scale
    out = np.rint(scaled)
    near_half = np.abs(np.subtract(scaled, out, out=scaled)) > 0.5 - 1e-3  # within 1e-3 of a half, either side
    out /= scale
    if np.count_nonzero(near_half):
        places = np.broadcast_to(np.asarray(decimals), values.shape)[near_half].tolist()
        out[near_half] = [round(v, d) for v, d in zip(values[near_half].tolist(), places, strict=True)]
    return out


SCORE_DECIMALS = 1  # a math score and its range as every channel reports them (and bands and monitors them)


def reported_scores(values: Any) -> np.ndarray:
    """Scores (or range ends) as every channel reports them: ``round_as_python`` to ``SCORE_DECIMALS``."""
    return round_as_python(values, SCORE_DECIMALS)

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

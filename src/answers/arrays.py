"""Array helpers shared by the answer columns."""

from __future__ import annotations

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

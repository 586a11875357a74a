"""The chance that a student's real math score is below the cut, from the same residuals as the 90 % range.

Training keeps the signed out-of-fold residuals (real minus predicted score) of the chosen model on the
training split; the 90 % range's half-width is a quantile of their absolute values. The same residuals give
the conformal predictive distribution of the real score around a prediction ``raw`` (unclipped):

    P(real < cut) = (#{r < cut - raw} + (#{r == cut - raw} + 1) / 2) / (n + 1)

(Vovk's conformal predictive system with the tie-breaking variable at its midpoint). It never reaches 0 or 1
(at least ``0.5 / (n + 1)`` from either end), and for a given model it falls as the predicted score rises:
a step function of ``cut - raw``. Training records the sorted residuals in the manifest; beyond
``MAX_RESIDUALS`` rows it records that many evenly spaced quantiles of them instead, which the same formula
reads as a sample of the distribution.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from src.answers.kernels import compute

MANIFEST_KEY = "predictive_distribution"
METHOD = "conformal predictive distribution of the out-of-fold residuals on the training split"
MAX_RESIDUALS = 5000


def below_cut_probability(raw: np.ndarray, residuals: np.ndarray, cut: float) -> np.ndarray:
    """P(real score < cut) for each unclipped predicted score; ``residuals`` sorted ascending (real - predicted).

    With ``below`` residuals under the gap and ``at_most`` at or under it, (below + (at_most - below + 1) / 2)
    / (n + 1), written as (below + at_most + 1) / (2 (n + 1)): the same exact halves, one division
    (``src.answers.kernels.compute``)."""
    return compute(raw=raw, cut=cut, residuals=np.ascontiguousarray(residuals, dtype=float)).numbers[5]


def distribution_record(residuals: np.ndarray) -> dict[str, Any]:
    """What the manifest keeps: the sorted signed residuals (or MAX_RESIDUALS evenly spaced quantiles of them)."""
    ordered = np.sort(np.asarray(residuals, dtype=float))
    rows = len(ordered)
    if rows > MAX_RESIDUALS:
        ordered = np.quantile(ordered, (np.arange(MAX_RESIDUALS) + 0.5) / MAX_RESIDUALS)
    return {"method": METHOD, "rows": rows, "residuals": ordered.tolist()}


@dataclass(frozen=True)
class BelowCut:
    """A loaded model's predictive distribution: the sorted residuals."""

    residuals: np.ndarray
    available: bool = True
    reason: None = None

    def many(self, raw: np.ndarray, cut: float) -> np.ndarray:
        return below_cut_probability(raw, self.residuals, cut)


@dataclass(frozen=True)
class NoBelowCut:
    """The loaded model cannot say the chance; ``reason`` says why."""

    reason: str
    available: bool = False


def build_below_cut(manifest: Mapping[str, Any]) -> BelowCut | NoBelowCut:
    """The predictive distribution a manifest records, checked; else the reason there is none."""
    record = manifest.get(MANIFEST_KEY)
    if not isinstance(record, Mapping) or not isinstance(record.get("residuals"), list):
        return NoBelowCut(
            "this model was trained before its residuals were recorded; retrain it to get the chance "
            "of a score below the cut"
        )
    try:
        residuals = np.asarray(record["residuals"], dtype=float)
    except (TypeError, ValueError) as err:
        return NoBelowCut(f"the manifest's residuals are unreadable ({err!r})")
    if residuals.ndim != 1 or len(residuals) < 2 or not np.all(np.isfinite(residuals)) or np.any(np.diff(residuals) < 0):
        return NoBelowCut("the manifest's residuals are not a sorted list of numbers")
    return BelowCut(residuals)

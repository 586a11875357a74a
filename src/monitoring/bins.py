"""The score distributions as counters Prometheus can sum across instances: the dashboard's and the fleet's PSI.

Each server's drift window (src.monitoring.window) holds its own recent students, so no server can say what
the fleet's students look like. Counters can be summed: every predicted student adds one to the 1-point bin of
its reading score, its writing score and its predicted score (``model_score_students_total{feature, bin}``,
``bin`` the bin's upper bound: a score in (bin - 1, bin], ``0`` for scores at or below 0, ``+Inf`` above 100),
and one to its category of each categorical feature (``model_input_category_total``, src.monitoring.metrics).
Prometheus sums their increase over a window across every instance, and src.monitoring.fleet turns the sums
into the same PSI report as one server's window, with the same thresholds. Fixed bins, not the model's deciles:
the counters keep their meaning when a new model is loaded, and every label value comes from a closed set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter

from src.monitoring.drift import PREDICTION
from src.periodic import Buffer
from src.schema import NUMERIC_FEATURES
from src.validation import StudentColumns

NAME = "model_score_students"
SCORED = (*(f.name for f in NUMERIC_FEATURES), PREDICTION)
UPPER_BOUNDS: tuple[float, ...] = (*(float(b) for b in range(0, 101)), math.inf)


def bin_label(upper: float) -> str:
    """A bin's label: its upper bound as Prometheus writes bucket bounds (``72``, ``+Inf``)."""
    return "+Inf" if math.isinf(upper) else f"{upper:g}"


def bin_upper(label: str) -> float:
    """The upper bound a label names (the inverse of ``bin_label``)."""
    return math.inf if label == "+Inf" else float(label)


LABELS = tuple(bin_label(b) for b in UPPER_BOUNDS)
_BOUNDS = np.array(UPPER_BOUNDS)  # searched as an array: a tuple would be converted at every call


def bin_counts(values: np.ndarray) -> np.ndarray:
    """Students per bin (``UPPER_BOUNDS`` order): a value v goes to the first bound at or above it."""
    return np.bincount(np.searchsorted(_BOUNDS, np.asarray(values, dtype=float), side="left"), minlength=len(LABELS))


class ScoreBins:
    """The per-bin counters, fed by the app's observers (src.web.services) like the other metrics.

    Single students are buffered and counted by the worker's monitoring flusher; a batch is counted at once,
    one increment per bin that received students. Every series exists from the start at 0, so that
    Prometheus' ``increase()`` counts a bin's first students too.
    """

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.counter = Counter(
            NAME,
            "Predicted students per 1-point bin of a score (bin = its upper bound; feature: reading_score, "
            "writing_score or prediction)",
            ["feature", "bin"],
            registry=registry,
        )
        self._children = {name: [self.counter.labels(name, label) for label in LABELS] for name in SCORED}
        self._pending: Buffer[tuple[Mapping[str, Any], float]] = Buffer()

    # Observer protocol (src.web.services)
    def predicted(self, channel: str, records: Sequence[Mapping[str, Any]], scores: np.ndarray) -> None:
        if len(records) == 1:
            self._pending.add((records[0], float(scores[0])))
            return
        self._count(records, np.asarray(scores, dtype=float))

    def flush(self) -> None:
        pending = self._pending.drain()
        if pending:
            self._count([r for r, _ in pending], np.fromiter((s for _, s in pending), dtype=float, count=len(pending)))

    def _count(self, records: Sequence[Mapping[str, Any]], scores: np.ndarray) -> None:
        for feature in NUMERIC_FEATURES:
            if isinstance(records, StudentColumns):  # many students as columns: read the columns
                values = np.asarray(records.numbers[feature.name], dtype=float)
            else:
                values = np.fromiter((r[feature.name] for r in records), dtype=float, count=len(records))
            self._add(feature.name, values)
        self._add(PREDICTION, scores)

    def _add(self, name: str, values: np.ndarray) -> None:
        children, counts = self._children[name], bin_counts(values)
        for i in np.flatnonzero(counts):
            children[i].inc(int(counts[i]))

    def rejected(self, errors: Sequence[Any]) -> None:
        return None

    def counted(self, channel: str, n: int) -> None:
        return None  # a student with background fields not known is left out, as the drift window leaves them

    def labeled(self, records: Sequence[Mapping[str, Any]], outcomes: Any) -> None:
        return None

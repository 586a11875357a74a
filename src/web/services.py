"""What one app object holds: its config, its model slot, its metrics and its drift window."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from flask import current_app

from src.config import AppConfig
from src.validation import FieldError
from src.web.model_slot import ModelSlot

EXTENSION = "student_math"


class Observer(Protocol):
    """Receives what happened to each request's students (metrics, drift); may do nothing."""

    def predicted(self, channel: str, records: Sequence[Mapping[str, Any]], scores: np.ndarray) -> None: ...

    def rejected(self, errors: Sequence[FieldError]) -> None: ...

    def counted(self, channel: str, n: int) -> None:
        """Answers whose background was partly not known: counted, kept out of the input and drift statistics."""
        ...

    def labeled(self, records: Sequence[Mapping[str, Any]], outcomes: Any) -> None:
        """Answers checked against real scores (``src.answers.evaluation.Outcomes``, one per record): aggregates
        only may be kept."""
        ...


@dataclass
class Services:
    config: AppConfig
    slot: ModelSlot
    observers: list[Observer]
    drift: Any | None = None  # src.monitoring.window.DriftTracker when metrics are on
    realized: Callable[[], Mapping[str, Any]] | None = None  # the realized counters' sums, when metrics are on

    def predicted(self, channel: str, records: Sequence[Mapping[str, Any]], scores: np.ndarray) -> None:
        for observer in self.observers:
            observer.predicted(channel, records, scores)

    def rejected(self, errors: Sequence[FieldError]) -> None:
        for observer in self.observers:
            observer.rejected(errors)

    def counted(self, channel: str, n: int) -> None:
        for observer in self.observers:
            observer.counted(channel, n)

    def labeled(self, records: Sequence[Mapping[str, Any]], outcomes: Any) -> None:
        for observer in self.observers:
            observer.labeled(records, outcomes)


def services() -> Services:
    return current_app.extensions[EXTENSION]

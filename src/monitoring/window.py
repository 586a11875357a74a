"""The sliding window of recent students, shared by every worker process of one server.

Where it lives: a small memory-mapped file (a ring buffer of float64 rows) in a folder on the server's
local disk, guarded by an exclusive ``flock``. gunicorn's workers are separate processes on one machine, so
a per-process window would see only part of the traffic and each worker would report different drift. A
file every worker maps is shared by the kernel's page cache (no I/O on the request path), costs a few
microseconds to append to, survives a worker's restart, and needs no extra service. Each server keeps its
own window, as each sees its own traffic; Prometheus compares servers.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from src.monitoring.drift import WINDOW_COLUMNS, drift_report, encode_row, encode_rows
from src.schema import FEATURE_NAMES

logger = logging.getLogger(__name__)

_HEADER = 4  # int64 slots: magic, capacity, columns, students ever added
_MAGIC = 0x53_4D_57_31  # "SMW1"


class SharedWindow:
    """A fixed-size ring buffer of rows in a memory-mapped file, safe across processes."""

    def __init__(self, directory: Path, capacity: int, columns: int = len(WINDOW_COLUMNS)) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "drift-window.bin"
        self.capacity = capacity
        self.columns = columns
        self._lock_path = directory / "drift-window.lock"
        self._lock_fd: int | None = None
        self._lock_pid = 0
        size = (_HEADER + capacity * columns) * 8
        with self._locked():
            if not self._matches():
                with open(self.path, "wb") as handle:
                    handle.truncate(size)
                header = np.memmap(self.path, dtype=np.int64, mode="r+", shape=(_HEADER,))
                header[:] = (_MAGIC, capacity, columns, 0)
                header.flush()
                del header
        with open(self.path, "r+b") as handle:
            self._map = mmap.mmap(handle.fileno(), size)
        # Plain ndarray views of the shared pages (np.memmap's subclass costs microseconds per access).
        self._header = np.frombuffer(self._map, dtype=np.int64, count=_HEADER)
        self._rows = np.frombuffer(self._map, dtype=np.float64, offset=_HEADER * 8).reshape(capacity, columns)

    def _matches(self) -> bool:
        if not self.path.is_file() or self.path.stat().st_size != (_HEADER + self.capacity * self.columns) * 8:
            return False
        header = np.fromfile(self.path, dtype=np.int64, count=_HEADER)
        return bool(header[0] == _MAGIC and header[1] == self.capacity and header[2] == self.columns)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # One descriptor per process: flock belongs to the open file description, which a fork shares.
        if self._lock_fd is None or self._lock_pid != os.getpid():
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            self._lock_pid = os.getpid()
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def append(self, rows: np.ndarray) -> None:
        """Add rows; only the last ``capacity`` of them can stay, so only those are written."""
        added = len(rows)
        kept = rows[-self.capacity :]
        with self._locked():
            total = int(self._header[3])
            slots = (total + added - len(kept) + np.arange(len(kept))) % self.capacity
            self._rows[slots] = kept
            self._header[3] = total + added

    def snapshot(self) -> np.ndarray:
        """The rows held now (at most ``capacity``), as a private copy."""
        with self._locked():
            held = min(int(self._header[3]), self.capacity)
            return np.array(self._rows[:held])

    def clear(self) -> None:
        with self._locked():
            self._header[3] = 0

    @property
    def total(self) -> int:
        return int(self._header[3])


class DriftTracker:
    """Adds each predicted student to the shared window; compares the window with the model's reference.

    Single students are buffered and written by the worker's monitoring flusher (src.periodic), so the
    lock and the shared pages stay off the request path; a report flushes this process's buffer first.
    """

    def __init__(self, window: SharedWindow, *, threshold: float, min_samples: int) -> None:
        self.window = window
        self.threshold = threshold
        self.min_samples = min_samples
        self.profile: Mapping[str, Any] | None = None
        self._pending: list[tuple[float, ...]] = []
        self._pending_lock = threading.Lock()

    def model_loaded(self, pipeline: Any) -> None:
        self.profile = pipeline.reference_profile

    # Observer protocol (src.web.services)
    def predicted(self, channel: str, records: Sequence[Mapping[str, Any]], scores: np.ndarray) -> None:
        if len(records) == 1:
            row = encode_row(records[0], float(scores[0]))
            with self._pending_lock:
                self._pending.append(row)
            return
        self.flush()
        keep = self.window.capacity
        self.window.append(encode_rows(records[-keep:], scores[-keep:]))

    def flush(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, []
        if pending:
            self.window.append(np.asarray(pending, dtype=np.float64))

    def rejected(self, errors: Sequence[Any]) -> None:
        return None

    def report(self) -> dict[str, Any]:
        self.flush()
        if self.profile is None:
            return {"available": False, "reason": "the loaded model has no reference profile (or no model is loaded)",
                    "window_size": min(self.window.total, self.window.capacity)}
        report = drift_report(self.profile, self.window.snapshot(), threshold=self.threshold,
                              min_samples=self.min_samples)
        return {"available": True, "window_capacity": self.window.capacity, **report}


class DriftCollector(Collector):
    """Exposes the drift report as gauges, computed from the shared window at scrape time."""

    def __init__(self, tracker: DriftTracker) -> None:
        self.tracker = tracker

    def collect(self) -> Iterator[GaugeMetricFamily]:
        report = self.tracker.report()
        feature = GaugeMetricFamily("model_feature_drift", "PSI of each feature, recent students vs training",
                                    labels=["feature"])
        prediction = GaugeMetricFamily("model_prediction_drift", "PSI of predicted scores vs the test split")
        detected = GaugeMetricFamily("model_drift_detected", "1 when drift crosses the threshold on a full window")
        size = GaugeMetricFamily("model_drift_window_students", "Students in the drift window")
        size.add_metric([], float(report["window_size"]))
        if report.get("available"):
            for name in FEATURE_NAMES:
                value = report["features"][name]
                if value is not None:
                    feature.add_metric([name], value)
            if report["prediction"] is not None:
                prediction.add_metric([], report["prediction"])
            detected.add_metric([], 1.0 if report["drift_detected"] else 0.0)
        else:
            detected.add_metric([], 0.0)
        yield from (feature, prediction, detected, size)

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
import math
import mmap
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Gauge

from src.monitoring.drift import WINDOW_COLUMNS, drift_report, encode_rows
from src.periodic import Buffer
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
        self._thread_lock = threading.Lock()  # flock does not exclude the threads of one process from each other
        size = (_HEADER + capacity * columns) * 8
        with self._locked():
            if not self._matches():
                self._replace(size)
            with open(self.path, "r+b") as handle:  # under the lock: the file mapped is the one checked
                self._map = mmap.mmap(handle.fileno(), size)
        # Plain ndarray views of the shared pages (np.memmap's subclass costs microseconds per access).
        self._header = np.frombuffer(self._map, dtype=np.int64, count=_HEADER)
        self._rows = np.frombuffer(self._map, dtype=np.float64, offset=_HEADER * 8).reshape(capacity, columns)

    def _replace(self, size: int) -> None:
        """A new, empty window file of ``size`` bytes, written under a temporary name and renamed into place.

        Never truncated in place: another process may have the old file mapped, and touching pages beyond a
        shortened file's end kills it with SIGBUS. The rename leaves the old inode intact for whoever maps it.
        """
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        header = np.array((_MAGIC, self.capacity, self.columns, 0), dtype=np.int64)
        try:
            with open(tmp, "wb") as handle:
                handle.write(header.tobytes())
                handle.truncate(size)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        logger.info("drift window %s: new file for %d students of %d columns", self.path, self.capacity, self.columns)

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
            self._thread_lock = threading.Lock()
        with self._thread_lock:
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

    Single students are buffered as they are and encoded and written by the worker's monitoring flusher
    (src.periodic), so encoding, the lock and the shared pages stay off the request path; a report flushes
    this process's buffer first.
    """

    def __init__(self, window: SharedWindow, *, threshold: float, min_samples: int) -> None:
        self.window = window
        self.threshold = threshold
        self.min_samples = min_samples
        self.profile: Mapping[str, Any] | None = None
        self._pending: Buffer[tuple[Mapping[str, Any], float]] = Buffer()

    def model_loaded(self, pipeline: Any) -> None:
        self.profile = pipeline.reference_profile

    # Observer protocol (src.web.services)
    def predicted(self, channel: str, records: Sequence[Mapping[str, Any]], scores: np.ndarray) -> None:
        if len(records) == 1:
            self._pending.add((records[0], scores[0]))
            return
        self.flush()  # keep the window in arrival order
        self._write(records, scores)

    def flush(self) -> None:
        pending = self._pending.drain()
        if pending:
            self._write([r for r, _ in pending], np.fromiter((s for _, s in pending), dtype=np.float64))

    def _write(self, records: Sequence[Mapping[str, Any]], scores: np.ndarray) -> None:
        keep = self.window.capacity  # older rows would be overwritten at once: do not encode them
        self.window.append(encode_rows(records[-keep:], scores[-keep:]))

    def rejected(self, errors: Sequence[Any]) -> None:
        return None

    def counted(self, channel: str, n: int) -> None:
        return None  # the window compares known inputs with training; a student not fully known is left out

    def labeled(self, records: Sequence[Mapping[str, Any]], outcomes: Any) -> None:
        return None  # the window holds inputs only: a real score never reaches it

    def report(self) -> dict[str, Any]:
        self.flush()
        if self.profile is None:
            return {
                "available": False,
                "reason": "the loaded model has no reference profile (or no model is loaded)",
                "window_size": min(self.window.total, self.window.capacity),
            }
        report = drift_report(self.profile, self.window.snapshot(), threshold=self.threshold, min_samples=self.min_samples)
        return {"available": True, "window_capacity": self.window.capacity, **report}


class DriftGauges:
    """The drift report as gauges, refreshed from the shared window before each scrape.

    Plain gauges, so that under gunicorn they live in prometheus_client's multiprocess files like every other
    metric and whichever worker answers ``/metrics`` shows them. Every worker computes the same report from
    the same shared window; ``mostrecent`` keeps the latest one written.
    """

    def __init__(self, tracker: DriftTracker, registry: CollectorRegistry | None) -> None:
        self.tracker = tracker
        mode = "mostrecent"
        self.feature = Gauge(
            "model_feature_drift",
            "PSI of each feature, recent students vs training",
            ["feature"],
            registry=registry,
            multiprocess_mode=mode,
        )
        self.prediction = Gauge(
            "model_prediction_drift", "PSI of predicted scores vs the test split", registry=registry, multiprocess_mode=mode
        )
        self.detected = Gauge(
            "model_drift_detected",
            "1 when drift crosses the threshold on a full window",
            registry=registry,
            multiprocess_mode=mode,
        )
        self.size = Gauge(
            "model_drift_window_students", "Students in the drift window", registry=registry, multiprocess_mode=mode
        )
        self.detected.set(0)

    def refresh(self) -> None:
        report = self.tracker.report()
        self.size.set(report["window_size"])
        available = bool(report.get("available"))
        values = report["features"] if available else {}
        for name in FEATURE_NAMES:
            self._show(self.feature.labels(name), values.get(name))
        self._show(self.prediction, report.get("prediction") if available else None)
        self.detected.set(1.0 if available and report["drift_detected"] else 0.0)

    @staticmethod
    def _show(gauge: Any, value: float | None) -> None:
        """A score, or NaN (no value: no students yet, or no reference profile) rather than a stale one."""
        gauge.set(math.nan if value is None else value)

"""The service's Prometheus metrics: what was predicted, for whom, by which model, at what cost.

Per-student metrics of predictions (single students and batches) are buffered in memory and applied by the
worker's monitoring flusher (``src.periodic``: four times a second, before every scrape, at exit), off the
request path: under multiprocess mode each metric update is a write to a memory-mapped file, and buffered
students are counted together, one increment per category (or score bin, src.monitoring.bins) that received
any. The score distributions are counters per 1-point bin rather than histograms: prometheus_client's public
API observes a histogram one value at a time, two file writes per student and score. Only public
prometheus_client APIs are used. Those counts are therefore at most about a quarter of a second late
(and a worker killed with SIGKILL loses that last quarter second of them). ``model_predictions_total`` alone
is written as each answer is made, so it counts every answered prediction even then.

One ``ServiceMetrics`` per app object, on the app's own registry (a second ``create_app()`` in tests gets a
fresh registry, so no "Duplicated timeseries"). Under gunicorn with ``PROMETHEUS_MULTIPROC_DIR`` set,
prometheus_client keeps every value in per-process files that ``/metrics`` merges, so counts are right
whichever worker served a request or answers the scrape; gauges say how they merge (``multiprocess_mode``).
"""

from __future__ import annotations

import math
import os
import resource
import threading
import time
from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from src.periodic import Buffer
from src.schema import CATEGORICAL_FEATURES, FEATURE_NAMES, TARGET
from src.validation import OTHER_FIELD, FieldError, StudentColumns, field_label

# Latency buckets for a service that answers in about a millisecond.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.5, 5.0)

CHANNELS = ("form", "json", "batch")
FIELD_LABELS = (*FEATURE_NAMES, TARGET.name)  # a broken real score counts under the target's name


# Request methods kept as label values; any other (a client may send any token) is counted as "other".
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    """The HTTP request series of prometheus-flask-exporter's defaults: same names, labels, help and meaning.

    The exporter records them in three Flask hooks per request, which reach the request through its context
    proxy a dozen times, look both label sets up by keyword and write three memory-mapped values: about 57
    microseconds a request, more than a tenth of a prediction's whole latency (bench/serving.py). Here the
    app's WSGI middleware (src.web.monitoring) calls ``started`` and ``record`` once per request with plain
    values, which only count and append under a lock; ``flush`` (the worker's monitoring flusher: four times a
    second, before every scrape, at exit) applies them, so a request is counted at most a quarter of a second
    late, never lost. The in-flight gauge is written by ``flush`` too: a worker whose every thread is stuck
    still shows its requests in flight, since the flusher is a thread of its own. Labels
    as the exporter sets them with ``group_by="url_rule"``: the status as a number, the matched URL rule or
    ``None`` when nothing matched; unusual methods are folded into "other" so that clients cannot create
    series at will.
    """

    def __init__(self, registry: CollectorRegistry | None, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.duration = Histogram(
            "flask_http_request_duration_seconds",
            "Flask HTTP request duration in seconds",
            ["method", "url_rule", "status"],
            buckets=buckets,
            registry=registry,
        )
        self.total = Counter(
            "flask_http_request_total", "Total number of HTTP requests", ["method", "status"], registry=registry
        )
        self.exceptions = Counter(
            "flask_http_request_exceptions_total",
            "Total number of HTTP requests which resulted in an exception",
            ["method", "status"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "http_requests_in_flight", "Requests being served now", registry=registry, multiprocess_mode="livesum"
        )
        for method in ("GET", "POST"):  # present from the start, so that increase() sees the first one
            self.exceptions.labels(method, "500")
        self._lock = threading.Lock()
        self._active = 0
        self._pending: list[tuple[str, str, str, float]] = []

    def started(self) -> None:
        """A request came in: counted in flight until ``record``."""
        with self._lock:
            self._active += 1

    def record(self, method: str, url_rule: str, status: str, seconds: float) -> None:
        """A request was answered (after ``started``)."""
        with self._lock:
            self._active -= 1
            self._pending.append((method, url_rule, status, seconds))

    def flush(self) -> None:
        """Apply the buffered requests, and write how many are in flight now (the gauge's value for this worker)."""
        with self._lock:  # the gauge written under the lock: a slower flush never writes an older count
            pending, self._pending = self._pending, []
            self.in_flight.set(self._active)
        by_labels: dict[tuple[str, str, str], list[float]] = {}
        for method, url_rule, status, seconds in pending:
            label = method if method in HTTP_METHODS else "other"
            by_labels.setdefault((label, url_rule, status), []).append(seconds)
        for (method, url_rule, status), durations in by_labels.items():
            observe_many(self.duration.labels(method, url_rule, status), np.asarray(durations))
            self.total.labels(method, status).inc(len(durations))

    def raised(self, method: str) -> None:
        """A request whose handler raised: it is answered 500, as the exporter counts it."""
        self.exceptions.labels(method if method in HTTP_METHODS else "other", "500").inc()


REALIZED = (
    ("students", "model_realized_students", "Predicted students whose real math score was given (labeled)"),
    (
        "absolute_error",
        "model_realized_absolute_error",
        "Sum over labeled students of |predicted - real math score|, in score points",
    ),
    ("inside", "model_realized_inside_range", "Labeled students whose real math score fell inside the 90 % range"),
    ("below_cut", "model_realized_below_cut", "Labeled students whose real math score was below the support cut"),
)


REALIZED_MIN_STUDENTS = 10  # k: labeled students pooled in a group before its sums are published


class RealizedMetrics:
    """Realized performance: what the answers were worth once real scores arrived, as counters only.

    Overall (``model_realized_*_total``) and per student group (``model_realized_group_*_total``, labels
    ``feature`` and ``group`` from the schema's categories alone). No student, id or real score is a label or
    is kept as such.

    No single student can be read back from the counters: the sums of the overall figure and of each group are
    pooled in the worker until they hold ``min_students`` (k, 10 by default) labeled students, and only then
    added to the counter, all at once, and the pool starts again. Every change of a published counter is thus a
    sum over at least k students: one labeled student moves nothing, and the difference between two scrapes is
    an aggregate of k or more. (One worker's pool of fewer than k students is lost when that worker exits.)
    """

    def __init__(self, registry: CollectorRegistry | None, min_students: int = REALIZED_MIN_STUDENTS) -> None:
        self.registry = registry
        self.min_students = min_students
        # Pooled, unpublished sums: per cell (None for overall, else (feature, group)), per key.
        self._pool: dict[tuple[str, str] | None, dict[str, float]] = {}
        self._pool_lock = threading.Lock()
        self.overall = {key: Counter(name, text, registry=registry) for key, name, text in REALIZED}
        self.by_group = {
            key: Counter(
                name.replace("model_realized_", "model_realized_group_"),
                text + ", per group",
                ["feature", "group"],
                registry=registry,
            )
            for key, name, text in REALIZED
        }
        self._groups = {
            key: {f.name: {c: counter.labels(f.name, c) for c in f.categories} for f in CATEGORICAL_FEATURES}
            for key, counter in self.by_group.items()
        }

    def labeled(self, records: Sequence[Mapping[str, Any]], outcomes: Any) -> None:
        mask = np.asarray(outcomes.labeled, dtype=bool)
        if not mask.any():
            return
        at = np.flatnonzero(mask)
        values = {
            "students": np.ones(len(at)),
            "absolute_error": np.abs(outcomes.error[at]),
            "inside": outcomes.inside[at].astype(float),
            "below_cut": outcomes.below[at].astype(float),
        }
        sums: dict[tuple[str, str] | None, dict[str, float]] = {None: {k: float(v.sum()) for k, v in values.items()}}
        for feature in CATEGORICAL_FEATURES:
            groups = np.array([records[i][feature.name] for i in at], dtype=object)
            for category in feature.categories:
                mine = groups == category
                if mine.any():
                    sums[(feature.name, category)] = {k: float(v[mine].sum()) for k, v in values.items()}
        with self._pool_lock:
            ready = {}
            for cell, added in sums.items():
                pooled = self._pool.setdefault(cell, dict.fromkeys(added, 0.0))
                for key, value in added.items():
                    pooled[key] += value
                if pooled["students"] >= self.min_students:
                    ready[cell] = self._pool.pop(cell)
        for cell, pooled in ready.items():
            for key, value in pooled.items():
                if cell is None:
                    self.overall[key].inc(value)
                else:
                    self._groups[key][cell[0]][cell[1]].inc(value)

    def totals(self) -> dict[str, Any]:
        """The counters as every worker has them (merged from the multiprocess files under gunicorn)."""
        registry = self.registry
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=directory)
        assert registry is not None

        # One collection for every value: each get_sample_value would merge every worker's files again.
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in registry.collect()
            if family.name.startswith("model_realized_")
            for sample in family.samples
        }

        def value(name: str, labels: Mapping[str, str] | None = None) -> float:
            return float(samples.get((f"{name}_total", tuple(sorted((labels or {}).items()))), 0.0))

        out: dict[str, Any] = {key: value(name) for key, name, _ in REALIZED}
        out["groups"] = {
            f.name: {
                c: {
                    key: value(name.replace("model_realized_", "model_realized_group_"), {"feature": f.name, "group": c})
                    for key, name, _ in REALIZED
                }
                for c in f.categories
            }
            for f in CATEGORICAL_FEATURES
        }
        return out


class ServiceMetrics:
    """Prediction, input, validation, model and per-worker process metrics."""

    def __init__(self, registry: CollectorRegistry | None, realized_min_students: int = REALIZED_MIN_STUDENTS) -> None:
        reg = registry
        self.realized = RealizedMetrics(registry, realized_min_students)
        self.predictions = Counter(
            "model_predictions", "Students predicted, by channel (form, json, batch)", ["channel"], registry=reg
        )
        self.input_categories = Counter(
            "model_input_category", "Predicted students by category of each feature", ["feature", "category"], registry=reg
        )
        self.validation_failures = Counter(
            "model_validation_failures",
            "Rejected fields, by schema field name (any other field: other)",
            ["field"],
            registry=reg,
        )
        self.info = Gauge(
            "model_info",
            "The loaded model (1), by version and model type",
            ["version", "model"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.ready = Gauge("model_ready", "1 when a verified model is loaded", registry=reg, multiprocess_mode="livemin")
        self.test_r2 = Gauge("model_test_r2", "Test-split R2 of the loaded model", registry=reg, multiprocess_mode="livemax")
        self.test_mae = Gauge(
            "model_test_mae", "Test-split mean absolute error of the loaded model", registry=reg, multiprocess_mode="livemax"
        )
        self.group_mae = Gauge(
            "model_group_mae",
            "Test-split MAE of the loaded model per student group",
            ["feature", "group"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.group_coverage = Gauge(
            "model_group_coverage",
            "Test-split interval coverage of the loaded model per student group",
            ["feature", "group"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.load_seconds = Gauge(
            "model_load_duration_seconds", "Time to verify and load the model", registry=reg, multiprocess_mode="livemax"
        )
        self.loaded_at = Gauge(
            "model_last_load_timestamp_seconds",
            "When the model was last loaded (Unix time)",
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.cpu = Gauge(
            "process_cpu_seconds_total",
            "CPU seconds used by this worker",
            ["pid"],
            registry=reg,
            multiprocess_mode="liveall",
        )
        self.rss = Gauge(
            "process_resident_memory_bytes",
            "Resident memory of this worker",
            ["pid"],
            registry=reg,
            multiprocess_mode="liveall",
        )
        for channel in CHANNELS:
            self.predictions.labels(channel)
        for feature in CATEGORICAL_FEATURES:
            for category in feature.categories:
                self.input_categories.labels(feature.name, category)
        self._failures = {f: self.validation_failures.labels(f) for f in (*FIELD_LABELS, OTHER_FIELD)}
        self._channel = {c: self.predictions.labels(c) for c in CHANNELS}
        self._category = {
            f.name: {c: self.input_categories.labels(f.name, c) for c in f.categories} for f in CATEGORICAL_FEATURES
        }
        pid = str(os.getpid())
        self._cpu, self._rss = self.cpu.labels(pid), self.rss.labels(pid)
        self._pending: Buffer[Mapping[str, Any]] = Buffer()
        self._batches: Buffer[Sequence[Mapping[str, Any]]] = Buffer()
        self._shown_model: tuple[str, str] | None = None
        self.ready.set(0)

    # Observer protocol (src.web.services)
    def predicted(self, channel: str, records: Sequence[Mapping[str, Any]], scores: np.ndarray) -> None:
        # The count is written at once, before the answer leaves: a worker killed at any moment has counted
        # every prediction it answered. The categories (of single students and batches) wait for the flusher.
        # The score distributions are the score bins' counters (src.monitoring.bins), not kept twice here.
        self._channel[channel].inc(len(records))
        if len(records) == 1:
            self._pending.add(records[0])
            return
        self._batches.add(records)

    def flush(self) -> None:
        """Apply the buffered predictions (single students and batches) to the category counters."""
        for records in self._batches.drain():
            self._count_categories(records)
        pending = self._pending.drain()
        if pending:
            self._count_categories(pending)

    def _count_categories(self, records: Sequence[Mapping[str, Any]]) -> None:
        if isinstance(records, StudentColumns):  # many students as columns: read the columns
            for feature in CATEGORICAL_FEATURES:
                counts = np.bincount(records.codes[feature.name], minlength=len(feature.categories)).tolist()
                children = self._category[feature.name]
                for category, count in zip(feature.categories, counts, strict=True):
                    if count:
                        children[category].inc(count)
            return
        for name, children in self._category.items():
            for category, count in Tally(r[name] for r in records).items():
                children[category].inc(count)

    def counted(self, channel: str, n: int) -> None:
        """Predictions with background fields not known: in the count, not in the input distributions."""
        self._channel[channel].inc(n)

    def labeled(self, records: Sequence[Mapping[str, Any]], outcomes: Any) -> None:
        """Students checked against their real scores: the realized counters."""
        self.realized.labeled(records, outcomes)

    def rejected(self, errors: Sequence[FieldError]) -> None:
        """Count rejected fields; the label is a schema field name or ``other``, never a client's text."""
        for label, count in Tally(field_label(e.field) for e in errors).items():
            self._failures[label].inc(count)

    def model_loaded(self, pipeline: Any) -> None:
        if self._shown_model is not None:  # clear() is not available in multiprocess mode
            self.info.labels(*self._shown_model).set(0)
        self._shown_model = (pipeline.model_version, pipeline.model_name)
        self.info.labels(*self._shown_model).set(1)
        test = pipeline.manifest["metrics"]["test"]
        self.test_r2.set(test["r2"])
        self.test_mae.set(test["mae"])
        self._show_groups(pipeline.manifest.get("groups") or {})
        self.load_seconds.set(pipeline.load_seconds)
        self.loaded_at.set(time.time())
        self.ready.set(1)

    def _show_groups(self, groups: Mapping[str, Any]) -> None:
        """Labels only from the schema's categories (a closed set); NaN where the model has no figure."""
        for feature in CATEGORICAL_FEATURES:
            rows = groups.get(feature.name) or {}
            for category in feature.categories:
                row = rows.get(category) or {}
                for gauge, key in ((self.group_mae, "mae"), (self.group_coverage, "coverage")):
                    value = row.get(key)
                    gauge.labels(feature.name, category).set(math.nan if value is None else float(value))

    def refresh_process(self) -> None:
        """Record this worker's CPU seconds and resident memory (by the flusher and before each scrape)."""
        times = os.times()
        self._cpu.set(times.user + times.system)
        self._rss.set(resident_bytes())


def observe_many(histogram: Any, values: Any) -> None:
    """Observe many values, one ``observe`` each (prometheus_client's public API has no bulk observation).

    Called by the worker's monitoring flusher, off the request path."""
    observe = histogram.observe
    for value in np.asarray(values, dtype=float).tolist():
        observe(value)


def resident_bytes() -> float:
    try:
        with open("/proc/self/statm", "rb") as handle:
            return float(int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)

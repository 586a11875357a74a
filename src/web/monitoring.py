"""Wiring metrics and drift into an app: the exporter, /metrics, /drift, in-flight requests, the flusher."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_flask_exporter import PrometheusMetrics

from src.monitoring.metrics import LATENCY_BUCKETS, ServiceMetrics, multiprocess_mode
from src.monitoring.window import DriftCollector, DriftTracker, SharedWindow
from src.periodic import Periodic
from src.web.errors import json_response
from src.web.services import Services, services

bp = Blueprint("monitoring", __name__)
FLUSHER = "student_math_flusher"


@bp.get("/drift")
def drift() -> Response:
    """The drift report of the shared window against the loaded model's training profile."""
    return json_response(services().drift.report())


def attach_monitoring(app: Flask, svc: Services) -> None:
    """Drift tracking unless DRIFT_ENABLED is false; Prometheus metrics unless METRICS_ENABLED is false."""
    config = svc.config
    flusher = Periodic([], 1.0, name="monitoring-flusher", run_at_exit=True)
    tracker = None
    if config.drift_enabled:
        directory = config.drift_dir or _default_drift_dir()
        tracker = DriftTracker(SharedWindow(directory, config.drift_window), threshold=config.drift_threshold,
                               min_samples=config.drift_min_samples)
        svc.drift = tracker
        svc.observers.append(tracker)
        svc.slot.listeners.append(tracker.model_loaded)
        flusher.callbacks.append(tracker.flush)
        app.register_blueprint(bp)
    in_flight = None
    if config.metrics_enabled:
        in_flight = _attach_metrics(app, svc, tracker, flusher)
    if flusher.callbacks:
        app.wsgi_app = _RequestHook(app.wsgi_app, flusher, in_flight)  # type: ignore[method-assign]
        app.extensions[FLUSHER] = flusher


def _default_drift_dir() -> Path:
    shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if shared:  # one folder every worker of this server sees
        return Path(shared) / "drift"
    return Path(tempfile.mkdtemp(prefix="student-math-drift-"))


class _RequestHook:
    """WSGI middleware: counts requests in flight and makes sure this worker's flusher runs."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], flusher: Periodic, in_flight: Gauge | None):
        self.wsgi_app = wsgi_app
        self.flusher = flusher
        self.in_flight = in_flight

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.flusher.ensure_started()
        if self.in_flight is None:
            return self.wsgi_app(environ, start_response)
        self.in_flight.inc()
        try:
            return self.wsgi_app(environ, start_response)
        finally:
            self.in_flight.dec()


def _attach_metrics(app: Flask, svc: Services, tracker: DriftTracker | None, flusher: Periodic) -> Gauge:
    registry = CollectorRegistry()
    exporter = PrometheusMetrics(app=None, path=None, registry=registry, group_by="url_rule",
                                 buckets=LATENCY_BUCKETS)
    exporter.init_app(app)
    metrics = ServiceMetrics(registry)
    svc.observers.append(metrics)
    svc.slot.listeners.append(metrics.model_loaded)
    flusher.callbacks += [metrics.flush, metrics.refresh_process]
    drift_collector = DriftCollector(tracker) if tracker is not None else None
    multiprocess = multiprocess_mode()
    if not multiprocess and drift_collector is not None:
        registry.register(drift_collector)

    def metrics_view() -> Response:
        flusher.run_now()
        if multiprocess:
            merged = CollectorRegistry()
            MultiProcessCollector(merged)
            if drift_collector is not None:
                merged.register(drift_collector)
            return Response(generate_latest(merged), mimetype=CONTENT_TYPE_LATEST)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", "metrics", metrics_view)
    app.extensions["student_math_metrics"] = metrics
    return metrics.in_flight

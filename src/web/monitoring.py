"""Wiring metrics and drift into an app: the exporter, /metrics, /drift, in-flight and process gauges."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flask import Blueprint, Flask, Response, g
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_flask_exporter import PrometheusMetrics

from src.monitoring.metrics import LATENCY_BUCKETS, ServiceMetrics, multiprocess_mode
from src.monitoring.window import DriftCollector, DriftTracker, SharedWindow
from src.web.errors import json_response
from src.web.services import Services, services

bp = Blueprint("monitoring", __name__)


@bp.get("/drift")
def drift() -> Response:
    """The drift report of the shared window against the loaded model's training profile."""
    return json_response(services().drift.report())


def attach_monitoring(app: Flask, svc: Services) -> None:
    """Drift tracking unless DRIFT_ENABLED is false; Prometheus metrics unless METRICS_ENABLED is false."""
    config = svc.config
    tracker = None
    if config.drift_enabled:
        directory = config.drift_dir or _default_drift_dir()
        tracker = DriftTracker(SharedWindow(directory, config.drift_window), threshold=config.drift_threshold,
                               min_samples=config.drift_min_samples)
        svc.drift = tracker
        svc.observers.append(tracker)
        svc.slot.listeners.append(tracker.model_loaded)
        app.register_blueprint(bp)
    if config.metrics_enabled:
        _attach_metrics(app, svc, tracker)


def _default_drift_dir() -> Path:
    shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if shared:  # one folder every worker of this server sees
        return Path(shared) / "drift"
    return Path(tempfile.mkdtemp(prefix="student-math-drift-"))


def _attach_metrics(app: Flask, svc: Services, tracker: DriftTracker | None) -> None:
    registry = CollectorRegistry()
    exporter = PrometheusMetrics(app=None, path=None, registry=registry, group_by="url_rule",
                                 buckets=LATENCY_BUCKETS)
    exporter.init_app(app)
    metrics = ServiceMetrics(registry)
    svc.observers.append(metrics)
    svc.slot.listeners.append(metrics.model_loaded)
    drift_collector = DriftCollector(tracker) if tracker is not None else None
    multiprocess = multiprocess_mode()
    if not multiprocess and drift_collector is not None:
        registry.register(drift_collector)

    @app.before_request
    def _enter() -> None:
        g._in_flight = True
        metrics.in_flight.inc()

    @app.teardown_request
    def _leave(_exc: BaseException | None) -> None:
        if g.pop("_in_flight", False):
            metrics.in_flight.dec()
        metrics.refresh_process()

    def metrics_view() -> Response:
        metrics.flush()
        metrics.refresh_process(force=True)
        if multiprocess:
            merged = CollectorRegistry()
            MultiProcessCollector(merged)
            if drift_collector is not None:
                merged.register(drift_collector)
            return Response(generate_latest(merged), mimetype=CONTENT_TYPE_LATEST)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", "metrics", metrics_view)
    app.extensions["student_math_metrics"] = metrics

"""Wiring metrics and drift into an app: /metrics, /drift, the request middleware, the flusher.

prometheus-flask-exporter serves ``/metrics``: under gunicorn it merges every worker's multiprocess files,
and it answers Prometheus in the format it asks for (OpenMetrics or text). Before each scrape the worker
flushes its buffered metrics and refreshes the drift gauges (the exporter's ``metrics_decorator``). The
request series are the exporter's defaults, recorded by ``_RequestHook`` (see ``RequestMetrics`` for why).

Test traffic can be kept out of the model's monitoring: a request carrying ``X-Monitoring-Exclude: true`` and
the monitoring token (``X-Monitoring-Token: <METRICS_TOKEN>``) is answered as any other, but its students reach
no observer (drift window, prediction, rejection and realized counters), so a contract test run against
production does not look like drift to ``retrain``. Without METRICS_TOKEN, or with another token, the header is
not honoured; the answer's ``X-Monitoring-Excluded`` header says which happened.
"""

from __future__ import annotations

import atexit
import functools
import hmac
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response
from prometheus_client import CollectorRegistry
from prometheus_flask_exporter import PrometheusMetrics

from src.answers.evaluation import realized_report
from src.monitoring.bins import ScoreBins
from src.monitoring.metrics import RequestMetrics, ServiceMetrics
from src.monitoring.window import DriftGauges, DriftTracker, SharedWindow
from src.periodic import Periodic
from src.web.errors import json_response, request_failed
from src.web.security import monitoring_refused
from src.web.services import Services, services

bp = Blueprint("monitoring", __name__)
# Often enough that each flush is short (a burst of a few hundred buffered students, not thousands).
FLUSH_SECONDS = 0.25
EXCLUDE_HEADER = "X-Monitoring-Exclude"  # "true": keep this request's students out of drift and model counters
TOKEN_HEADER = "X-Monitoring-Token"  # METRICS_TOKEN: the exclusion is honoured only with it
EXCLUDED_HEADER = "X-Monitoring-Excluded"  # in the answer to a request that asked: "true" or "false"


@bp.get("/drift")
def drift() -> Response:
    """The drift report of the shared window against the loaded model's training profile; with metrics on, also
    the realized performance since the server started (``realized``), which ``retrain`` reads too."""
    svc = services()
    denied = monitoring_refused(svc.config.metrics_token)
    if denied is not None:
        return denied
    report = svc.drift.report()
    if svc.realized is not None:
        pipeline = svc.slot.pipeline
        report["realized"] = realized_report(svc.realized(), pipeline.manifest if pipeline is not None else None)
    return json_response(report)


def attach_monitoring(app: Flask, svc: Services) -> Periodic | None:
    """Drift tracking unless DRIFT_ENABLED is false; Prometheus metrics unless METRICS_ENABLED is false.

    Returns the worker's flusher when it has work, for the app to start with its other background threads.
    """
    config = svc.config
    flusher = Periodic([], FLUSH_SECONDS, name="monitoring-flusher", run_at_exit=True)
    tracker = None
    if config.drift_enabled:
        directory = config.drift_dir or _default_drift_dir()
        tracker = DriftTracker(
            SharedWindow(directory, config.drift_window),
            threshold=config.drift_threshold,
            min_samples=config.drift_min_samples,
        )
        svc.drift = tracker
        svc.observers.append(_Excludable(tracker))
        svc.slot.listeners.append(tracker.model_loaded)
        flusher.callbacks.append(tracker.flush)
        app.register_blueprint(bp)
    if config.metrics_enabled:
        requests = _attach_metrics(app, svc, tracker, flusher)
        app.wsgi_app = _RequestHook(app.wsgi_app, requests)  # type: ignore[method-assign]
    if config.drift_enabled or config.metrics_enabled:
        app.wsgi_app = _Exclusion(app.wsgi_app, config.metrics_token)  # type: ignore[method-assign]
    return flusher if flusher.callbacks else None


class _Exclusion:
    """WSGI middleware: a request asking to be kept out of monitoring (``X-Monitoring-Exclude: true``) is kept out
    when it carries the monitoring token, and its answer says which happened (``X-Monitoring-Excluded``).

    In front of Flask rather than a ``before_request`` and an ``after_request`` hook: every other request costs
    one look in the environ, not two hook dispatches.
    """

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], token: str | None) -> None:
        self.wsgi_app = wsgi_app
        self.token = token.encode() if token else None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        asked = environ.get(_EXCLUDE_KEY)
        if asked is None:
            return self.wsgi_app(environ, start_response)
        given = environ.get(_TOKEN_KEY, "").encode()
        honoured = asked.strip().lower() == "true" and self.token is not None and hmac.compare_digest(given, self.token)
        said = (EXCLUDED_HEADER, "true" if honoured else "false")

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
            headers.append(said)
            return start_response(status, headers, exc_info)

        decided = _EXCLUDED.set(honoured)
        try:
            return self.wsgi_app(environ, start)
        finally:
            _EXCLUDED.reset(decided)


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


_EXCLUDE_KEY, _TOKEN_KEY = _environ_key(EXCLUDE_HEADER), _environ_key(TOKEN_HEADER)
# what was decided for a request that asked, while it is answered (its own context: a thread or a task)
_EXCLUDED: ContextVar[bool] = ContextVar("student_math_monitoring_excluded", default=False)


def _excluded() -> bool:
    return _EXCLUDED.get()


class _Excludable:
    """An observer that a request kept out of monitoring (see ``_attach_exclusion``) does not reach."""

    def __init__(self, observer: Any) -> None:
        self.observer = observer

    def predicted(self, channel: str, records: Any, scores: Any) -> None:
        if not _excluded():
            self.observer.predicted(channel, records, scores)

    def rejected(self, errors: Any) -> None:
        if not _excluded():
            self.observer.rejected(errors)

    def counted(self, channel: str, n: int) -> None:
        if not _excluded():
            self.observer.counted(channel, n)

    def labeled(self, records: Any, outcomes: Any) -> None:
        if not _excluded():
            self.observer.labeled(records, outcomes)


def _default_drift_dir() -> Path:
    shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if shared:  # one folder every worker of this server sees
        return Path(shared) / "drift"
    created = Path(tempfile.mkdtemp(prefix="student-math-drift-"))
    atexit.register(shutil.rmtree, created, ignore_errors=True)  # ours alone: removed when the process ends
    return created


class _RequestHook:
    """WSGI middleware: each request is timed, counted and counted in flight (``RequestMetrics``).

    The status comes from ``start_response``; the matched URL rule from the request Flask keeps in the
    environ (``werkzeug.request``) while it answers, read then because Flask clears it afterwards.
    """

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], requests: RequestMetrics):
        self.wsgi_app = wsgi_app
        self.requests = requests

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        requests = self.requests
        started = time.perf_counter()
        answered: list[tuple[str, Any]] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
            flask_request = environ.get("werkzeug.request")
            rule = getattr(flask_request, "url_rule", None)
            answered.append((status, rule))
            return start_response(status, headers, exc_info)

        requests.started()
        try:
            return self.wsgi_app(environ, capture)
        finally:
            status, rule = answered[-1] if answered else ("500", None)
            requests.record(environ.get("REQUEST_METHOD", ""), str(rule), status[:3], time.perf_counter() - started)


def _attach_metrics(app: Flask, svc: Services, tracker: DriftTracker | None, flusher: Periodic) -> RequestMetrics:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry, realized_min_students=svc.config.realized_min_students)
    requests = RequestMetrics(registry)
    bins = ScoreBins(registry)  # the score distributions: the dashboard's, and the fleet's drift (src.monitoring.fleet)
    svc.observers += [_Excludable(metrics), _Excludable(bins)]
    svc.realized = metrics.realized.totals
    svc.slot.listeners.append(metrics.model_loaded)
    flusher.callbacks += [metrics.flush, bins.flush, requests.flush, metrics.refresh_process]
    drift_gauges = DriftGauges(tracker, registry) if tracker is not None else None

    def before_scrape(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def scrape(*args: Any, **kwargs: Any) -> Any:
            denied = monitoring_refused(svc.config.metrics_token)
            if denied is not None:
                return denied
            flusher.run_now()
            if drift_gauges is not None:
                drift_gauges.refresh()
            return view(*args, **kwargs)

        return scrape

    exporter = PrometheusMetrics(
        app=None, path="/metrics", registry=registry, export_defaults=False, metrics_decorator=before_scrape
    )
    exporter.init_app(app)

    def raised(sender: Flask, *, method: str, **extra: Any) -> None:
        requests.raised(method)

    request_failed.connect(raised, app, weak=False)
    return requests

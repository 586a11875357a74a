"""The web app: ``create_app(config=None)`` builds it; gunicorn serves ``app:app``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Flask

from src.answers.model import load_champion
from src.config import AppConfig, configure_logging
from src.lifecycle.model_card import HISTORY_LIMIT
from src.periodic import BACKGROUND, Periodic
from src.store import open_store
from src.web import errors, health, model_page, openapi, prediction, security
from src.web.body_guard import VALUES_PER_STUDENT, BodyGuard
from src.web.headers import AnswerHeaders
from src.web.model_slot import ModelSlot
from src.web.monitoring import attach_monitoring
from src.web.services import EXTENSION, Services

ROOT = Path(__file__).resolve().parent


def create_app(config: AppConfig | None = None) -> Flask:
    """Build the app: logging, Flask settings, routes, error handlers, body limits, security headers and HSTS,
    metrics and drift, the model."""
    config = config or AppConfig.from_env()
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    configure_logging(config.log_level)
    app.config["MAX_CONTENT_LENGTH"] = config.max_content_length
    if config.trusted_hosts:  # any other Host header: 400, before anything is built from it
        app.config["TRUSTED_HOSTS"] = list(config.trusted_hosts)
    app.url_map.merge_slashes = False  # "/static//x" is not found rather than redirected to the client's Host
    services = Services(config=config, slot=_model_slot(config), observers=[])
    app.extensions[EXTENSION] = services
    app.register_blueprint(prediction.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(model_page.bp)
    app.register_blueprint(openapi.bp)
    errors.register_error_handlers(app)
    security.check_bearer_tokens(app, config.sign_in)
    guarded = BodyGuard(
        app.wsgi_app,
        config.max_content_length,
        max_values=(config.max_batch + 1) * VALUES_PER_STUDENT,
        timeout=config.body_timeout,
    )
    app.wsgi_app = AnswerHeaders(guarded, config.hsts_max_age)  # type: ignore[method-assign]
    background = [attach_monitoring(app, services)]
    services.slot.load()
    if config.model_refresh_seconds > 0:  # each worker checks its model source for a newer model
        background.append(Periodic([services.slot.refresh], config.model_refresh_seconds, name="model-refresher"))
    started = tuple(p for p in background if p is not None)
    app.extensions[BACKGROUND] = started  # gunicorn starts them as each worker boots (start_app_background)
    if started:
        app.wsgi_app = _StartedOnRequest(app.wsgi_app, started)  # type: ignore[method-assign]
    return app


class _StartedOnRequest:
    """WSGI middleware starting a worker's background threads (flusher, model refresher) at its first request,
    unless they started already (gunicorn starts them as each worker boots: ``start_app_background``).

    A thread does not survive gunicorn's fork, so each worker starts its own; after that each request reads
    one flag per thread. In front of Flask rather than a ``before_request`` hook, which Flask dispatches
    through its own machinery on every request.
    """

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], periodics: tuple[Periodic, ...]) -> None:
        self.wsgi_app = wsgi_app
        self.periodics = periodics

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        for periodic in self.periodics:
            periodic.ensure_started()
        return self.wsgi_app(environ, start_response)


def _model_slot(config: AppConfig) -> ModelSlot:
    """The model store's champion: MODEL_URI (s3://bucket/prefix) wins over ARTIFACTS_DIR when both are set."""
    store = open_store(config.model_uri or config.artifacts_dir, cache_dir=config.model_cache_dir)
    keys = config.verify_keys
    return ModelSlot(
        lambda: load_champion(store, keys),
        store.location,
        probe=lambda: store.champion().model_version,
        decisions=lambda: store.decisions(limit=HISTORY_LIMIT),
    )


app = create_app()

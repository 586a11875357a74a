"""The web app: ``create_app(config=None)`` builds it; gunicorn serves ``app:app``."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from src.config import AppConfig, configure_logging
from src.periodic import Periodic
from src.pipeline.predict_pipeline import PredictPipeline
from src.storage import read_manifest
from src.web import errors, health, openapi, prediction
from src.web.body_guard import BodyGuard
from src.web.model_slot import ModelSlot
from src.web.monitoring import attach_monitoring
from src.web.services import EXTENSION, Services

ROOT = Path(__file__).resolve().parent


def create_app(config: AppConfig | None = None) -> Flask:
    """Build the app: logging, Flask settings, routes, error handlers, body limits, metrics and drift, the model."""
    config = config or AppConfig.from_env()
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    configure_logging(config.log_level)
    app.config["MAX_CONTENT_LENGTH"] = config.max_content_length
    services = Services(config=config, slot=_model_slot(config), observers=[])
    app.extensions[EXTENSION] = services
    app.register_blueprint(prediction.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    errors.register_error_handlers(app)
    app.wsgi_app = BodyGuard(app.wsgi_app, config.max_content_length)  # type: ignore[method-assign]
    attach_monitoring(app, services)
    services.slot.load()
    if config.model_refresh_seconds > 0:  # each worker checks its model source for a newer model
        refresher = Periodic([services.slot.refresh], config.model_refresh_seconds, name="model-refresher")
        app.before_request(refresher.ensure_started)
    return app


def _model_slot(config: AppConfig) -> ModelSlot:
    """MODEL_URI (s3://bucket/prefix) wins over ARTIFACTS_DIR when both are set."""
    if config.model_uri:
        from src.pipeline.publish import load_from_uri, published_version

        uri, cache = config.model_uri, config.model_cache_dir
        return ModelSlot(lambda: load_from_uri(uri, cache), uri, probe=lambda: published_version(uri))
    directory = config.artifacts_dir
    return ModelSlot(lambda: PredictPipeline.from_artifacts(directory), str(directory),
                     probe=lambda: str(read_manifest(directory)["model_version"]))


app = create_app()

"""The model page: /model (HTML) and /model.json, and the plots made at training, from the loaded set only."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, render_template, send_file

from src.answers.evaluation import realized_report
from src.lifecycle.model_card import champion_history, drift_summary, model_card
from src.schema import CATEGORICAL_FEATURES
from src.web.errors import json_error, json_response
from src.web.services import services

bp = Blueprint("model_page", __name__)


def _card() -> dict[str, Any] | None:
    svc = services()
    pipeline = svc.slot.pipeline
    if pipeline is None:
        return None
    drift = drift_summary(svc.drift.report() if svc.drift is not None else None)
    card = model_card(pipeline.manifest, champion_history(svc.slot.decisions()), drift, pipeline.scorer.kind)
    card["realized"] = realized_report(svc.realized(), pipeline.manifest) if svc.realized is not None else None
    return card


@bp.get("/model.json")
def model_json() -> Response:
    card = _card()
    if card is None:
        return json_error(503, "model_unavailable", services().slot.error or "no model loaded")
    return json_response(card)


@bp.get("/model")
def model_html() -> tuple[str, int] | str:
    card = _card()
    if card is None:
        return render_template("model.html", card=None, error=services().slot.error or "no model loaded"), 503
    labels = {f.name: f.label for f in CATEGORICAL_FEATURES}
    return render_template(
        "model.html", card=card, labels=labels, error=None, policy=services().config.band_policy, plot_alt=PLOT_ALT
    )


# What each training plot shows, for a reader who cannot see it
PLOT_ALT = {
    "predicted_vs_actual.png": "Each test student's predicted math score against the real one: points near the "
    "diagonal line were predicted well, points far from it badly",
    "error_by_group.png": "The average error of the predictions for each student group of the test students",
}


@bp.get("/model/plots/<name>")
def plot(name: str) -> Response:
    """A PNG the loaded set's manifest lists as a plot (its sha256 was verified when the model loaded)."""
    pipeline = services().slot.pipeline
    if pipeline is None:
        return json_error(503, "model_unavailable", services().slot.error or "no model loaded")
    manifest = pipeline.manifest
    if name not in manifest.get("plots", []) or name not in manifest.get("files", {}) or not name.endswith(".png"):
        return json_error(404, "not_found", f"the loaded model has no plot named {name!r}")
    response = send_file(pipeline.directory / name, mimetype="image/png", max_age=300)
    response.headers["X-Model-Version"] = pipeline.model_version
    return response

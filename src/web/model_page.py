"""The model page: /model (HTML) and /model.json, and the plots made at training, from the loaded set only.

Its drift and real-score figures say whose they are: this instance's (its drift window, its real scores since
it started), or, with ``PROMETHEUS_URL`` set, the whole fleet's, summed by Prometheus over every instance.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, render_template, send_file

from src.answers.evaluation import realized_report
from src.lifecycle.model_card import champion_history, drift_summary, model_card
from src.monitoring.fleet import DRIFT_WINDOW, REALIZED_WINDOW, FleetQueryError, Prometheus, fleet_drift, fleet_realized
from src.schema import CATEGORICAL_FEATURES
from src.web.errors import json_error, json_response
from src.web.services import services

logger = logging.getLogger(__name__)
bp = Blueprint("model_page", __name__)
# The page waits this long for Prometheus before showing this instance's own figures instead.
FLEET_TIMEOUT_SECONDS = 2.0


def _card() -> dict[str, Any] | None:
    svc = services()
    pipeline = svc.slot.pipeline
    if pipeline is None:
        return None
    fleet = _fleet_figures(svc, pipeline) if svc.config.prometheus_url else None
    if fleet is not None:
        drift_report, realized, figures = fleet
    else:
        drift_report = svc.drift.report() if svc.drift is not None else None
        realized = svc.realized() if svc.realized is not None else None
        figures = _instance_figures(svc.config.prometheus_url is not None)
    card = model_card(
        pipeline.manifest, champion_history(svc.slot.decisions()), drift_summary(drift_report), pipeline.scorer.kind
    )
    card["realized"] = realized_report(realized, pipeline.manifest) if realized is not None else None
    card["figures"] = figures
    return card


def _instance_figures(unreachable: bool) -> dict[str, str]:
    why = (
        "Prometheus could not be asked for the fleet's"
        if unreachable
        else "other instances count their own; PROMETHEUS_URL gives the whole fleet's"
    )
    return {
        "scope": "instance",
        "realized": f"Whose figures: this instance alone, since it started ({why}).",
        "drift": f"Whose figures: the recent students of this instance alone ({why}).",
    }


def _fleet_figures(svc: Any, pipeline: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
    """(drift report, realized totals, whose) of the whole fleet from Prometheus, or None when it cannot answer."""
    prometheus = Prometheus(svc.config.prometheus_url, timeout=FLEET_TIMEOUT_SECONDS)
    try:
        realized = fleet_realized(prometheus)
        if pipeline.reference_profile is None:
            drift: dict[str, Any] = {"available": False, "reason": "the loaded model has no reference profile"}
        else:
            drift = fleet_drift(
                prometheus,
                pipeline.reference_profile,
                window=DRIFT_WINDOW,
                threshold=svc.config.drift_threshold,
                min_samples=svc.config.drift_min_samples,
            )
        instances = prometheus.instances()
    except FleetQueryError as err:
        logger.warning("model page: this instance's figures shown: %s", err)
        return None
    fleet = f"the whole fleet ({instances} instance{'s' if instances != 1 else ''} answering), summed by Prometheus"
    figures = {
        "scope": "fleet",
        "realized": f"Whose figures: {fleet}, over the last {REALIZED_WINDOW}.",
        "drift": f"Whose figures: {fleet}: the students of the last {DRIFT_WINDOW}.",
    }
    return drift, realized, figures


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

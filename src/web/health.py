"""Liveness and readiness."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response

from src.answers.columns import FACTOR_DECIMALS
from src.answers.factors import BASELINE_IS, METHOD, Factors
from src.web.errors import json_error, json_response
from src.web.services import services

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> Response:
    """200 while the process lives, model or not."""
    return json_response({"status": "ok"})


@bp.get("/ready")
def ready() -> Response:
    """200 with the model version once a verified model is loaded, else 503 with the reason."""
    slot = services().slot
    pipeline = slot.pipeline
    if pipeline is None:
        return json_error(503, "not_ready", slot.error or "no model loaded")
    return json_response(
        {
            "status": "ready",
            "model_version": pipeline.model_version,
            "model": pipeline.model_name,
            "source": slot.public_source,
            "loaded_at": datetime.fromtimestamp(slot.loaded_at, UTC).isoformat(timespec="seconds")
            if slot.loaded_at
            else None,
            "scorer": pipeline.scorer.kind,
            "last_error": slot.last_error,
            "worker": os.getpid(),
            "factors": _factors(pipeline.factors),
        }
    )


def _factors(factors: Factors) -> dict[str, Any]:
    """How the served model's factors are computed, or why it has none."""
    if not factors.available:
        return {"available": False, "reason": factors.reason}
    return {
        "available": True,
        "method": METHOD,
        "baseline": round(factors.baseline, FACTOR_DECIMALS),
        "baseline_is": BASELINE_IS,
    }

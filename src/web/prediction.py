"""The teachers' form and the JSON API, both at /predictdata."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from flask import Blueprint, Response, render_template, request

from src.pipeline.answers import MATH_SCORE, answers_frame, json_predictions
from src.schema import FEATURES, TARGET, CategoricalFeature
from src.validation import (
    MAX_DETAILS,
    FieldError,
    ValidationFailed,
    error_details,
    short_field,
    validate_student,
    validate_students,
)
from src.web.errors import json_error, json_response
from src.web.services import services

bp = Blueprint("prediction", __name__)

JSON_TYPE = "application/json"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@bp.get("/")
def index() -> str:
    slot = services().slot
    return render_template("index.html", pipeline=slot.pipeline, error=slot.error)


@bp.get("/predictdata")
def form() -> str:
    return _render_form({}, {}, None)


@bp.post("/predictdata")
def predict() -> Response | tuple[str, int] | str:
    mimetype = request.mimetype
    if mimetype == JSON_TYPE:
        return _predict_json()
    if mimetype in FORM_TYPES:
        return _predict_form()
    return json_error(
        415,
        "unsupported_media_type",
        f"send the student as {JSON_TYPE} (or as a form); got {mimetype or 'no Content-Type'}",
    )


def _predict_json() -> Response:
    try:
        body = json.loads(request.get_data())
    except ValueError as err:  # UnicodeDecodeError is a ValueError too
        return json_error(400, "malformed_json", f"the body is not valid JSON: {err}")
    svc = services()
    if isinstance(body, dict) and "instances" in body:
        return _predict_batch(body)
    record, errors = validate_student(body)
    if errors:
        return _validation_failed(errors)
    pipeline = svc.slot.pipeline
    if pipeline is None:
        return json_error(503, "model_unavailable", svc.slot.error or "no model loaded")
    score, low, high = pipeline.predict_one(record)
    svc.predicted("json", (record,), np.array((score,)))
    return json_response(
        {
            "math_score": round(score, 1),
            "interval": {"low": round(low, 1), "high": round(high, 1), "level": pipeline.level},
            "model_version": pipeline.model_version,
        }
    )


def _predict_batch(body: Mapping[str, Any]) -> Response:
    svc = services()
    instances = body["instances"]
    extra = [k for k in body if k != "instances"]
    if extra:
        return _validation_failed([FieldError(short_field(k), "is not an accepted field beside instances")
                                   for k in extra])
    if not isinstance(instances, list) or not instances:
        return _validation_failed([FieldError("instances", "must be a non-empty list of student objects")])
    if len(instances) > svc.config.max_batch:
        return json_error(
            413, "batch_too_large", f"at most {svc.config.max_batch} students per request, got {len(instances)}"
        )
    try:
        records = validate_students(instances)
    except ValidationFailed as failed:
        return _validation_failed(failed.errors)
    pipeline = svc.slot.pipeline
    if pipeline is None:
        return json_error(503, "model_unavailable", svc.slot.error or "no model loaded")
    answers = answers_frame(pipeline, records)
    svc.predicted("batch", records, answers[MATH_SCORE].to_numpy())
    return json_response({"predictions": json_predictions(answers), "model_version": pipeline.model_version})


def _validation_failed(errors: list[FieldError]) -> Response:
    services().rejected(errors)
    return json_response({"error": "validation_failed", **error_details(errors)}, status=422)


def _predict_form() -> tuple[str, int] | str:
    svc = services()
    values = {k: v for k, v in request.form.items()}
    record, errors = validate_student(values, from_form=True)
    if errors:
        svc.rejected(errors)
        return _render_form(values, {e.field: e.message for e in errors[:MAX_DETAILS]}, None), 422
    pipeline = svc.slot.pipeline
    if pipeline is None:
        return _render_form(values, {}, None, unavailable=svc.slot.error), 503
    score, low, high = pipeline.predict_one(record)
    svc.predicted("form", (record,), np.array((score,)))
    result = {
        "math_score": round(score, 1),
        "low": round(low, 1),
        "high": round(high, 1),
        "level": pipeline.level,
        "model_version": pipeline.model_version,
    }
    return _render_form(values, {}, result)


def _render_form(values: Mapping[str, str], errors: Mapping[str, str], result: Mapping[str, Any] | None,
                 unavailable: str | None = None) -> str:
    fields = [
        {
            "name": f.name,
            "label": f.label,
            "choices": f.categories if isinstance(f, CategoricalFeature) else None,
            "minimum": getattr(f, "minimum", None),
            "maximum": getattr(f, "maximum", None),
            "value": values.get(f.name, ""),
            "error": errors.get(f.name),
        }
        for f in FEATURES
    ]
    other_errors = {k: v for k, v in errors.items() if k not in {f.name for f in FEATURES}}
    return render_template(
        "predict.html", fields=fields, other_errors=other_errors, result=result, target=TARGET,
        unavailable=unavailable,
    )

"""The API's OpenAPI 3.1 document, generated from src/schema.py and served at /openapi.json.

Nothing here names a feature: the student object is built from ``FEATURES``. What the document lists is kept
in three tables, so that a change is one edit in one place:

- ``BODY_KINDS``: each body /predictdata accepts (media type -> its schema);
- ``PREDICTION_PROPERTIES`` / ``BATCH_PROPERTIES``: the properties of the JSON answers, each typed (band,
  factors and their contributions are components of their own); adding a field to the answers is one line
  there. The answer objects allow further properties (``additionalProperties: true``), so adding a key to an
  answer never breaks a client generated from, or validating against, an older document;
- ``ERRORS``: each error status with when it happens; every error answer is the shared ``Error`` component
  (``ValidationFailed`` for 422).
"""

from __future__ import annotations

import functools
from typing import Any

from flask import Blueprint, Response

from src.answers.bands import BAND_NAMES
from src.components.plots import PLOTS
from src.config import AppConfig
from src.schema import FEATURES, HEADER_ALIASES, NOT_KNOWN, TARGET, CategoricalFeature, Feature, NumericFeature
from src.validation import MAX_DETAILS
from src.web.body_guard import MAX_JSON_DEPTH
from src.web.errors import json_response
from src.web.services import services

bp = Blueprint("openapi", __name__)

JSON = "application/json"
HTML = "text/html"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def feature_schema(feature: Feature) -> dict[str, Any]:
    """One feature's JSON schema: its categories, or its range, and its label."""
    if isinstance(feature, CategoricalFeature):
        return {"type": "string", "enum": list(feature.categories), "description": feature.label}
    return {"type": "number", "minimum": feature.minimum, "maximum": feature.maximum, "description": feature.label}


def student_schema() -> dict[str, Any]:
    """A student as JSON: every feature by its schema name (the public download's headers are accepted too)."""
    properties = {f.name: feature_schema(f) for f in FEATURES}
    return {
        "type": "object",
        "description": "One student. The public download's headers ("
        + ", ".join(f"`{alias}`" for alias, name in HEADER_ALIASES.items() if name in properties)
        + ") are accepted in place of the schema names; any other field is refused (422).",
        "properties": properties,
        "required": [f.name for f in FEATURES],
        "additionalProperties": False,
    }


def labeled_student_schema() -> dict[str, Any]:
    """A student of a batch: may carry its real math score, to check the answers against (blank: null)."""
    schema = student_schema()
    real = {
        "type": ["number", "null"],
        "minimum": TARGET.minimum,
        "maximum": TARGET.maximum,
        "description": f"the student's real {TARGET.label.lower()}, when known (`math score` is accepted too); "
        "the answer then holds real_math_score, prediction_minus_real, inside_range, band_right "
        "per student and an `evaluation` of the batch",
    }
    return {
        **schema,
        "description": schema["description"] + " In a batch, a student may carry its real math score.",
        "properties": {**schema["properties"], TARGET.name: real},
    }


def form_field_schema(feature: Feature) -> dict[str, Any]:
    """One field of the teachers' form (a form body or the result page's query): its value as text."""
    if isinstance(feature, CategoricalFeature):
        if feature.may_be_unknown:  # the form's "not known": every possible value counted, a wider range
            return {
                "type": "string",
                "enum": [*feature.categories, NOT_KNOWN],
                "description": f'{feature.label}; "{NOT_KNOWN}" when the teacher does not know it',
            }
        return {"type": "string", "enum": list(feature.categories)}
    return {
        "type": "string",
        "pattern": _decimal_pattern(feature.minimum, feature.maximum),
        "description": f"{feature.label}: a number from {feature.minimum:g} to {feature.maximum:g}, as text "
        "with a decimal point (a decimal comma is refused)",
    }


def form_schema() -> dict[str, Any]:
    """The teachers' form: the same fields, every value sent as text."""
    properties = {f.name: form_field_schema(f) for f in FEATURES}
    return {
        "type": "object",
        "properties": properties,
        "required": [f.name for f in FEATURES],
        "additionalProperties": False,
    }


def upload_schema() -> dict[str, Any]:
    """The form as multipart: one student's fields, or a class list file instead.

    A schema of its own (not ``Form`` again): generators make one type per body, and one schema under two
    media types gave a client that did not import.
    """
    properties = {f.name: form_field_schema(f) for f in FEATURES}
    properties["class_list"] = {
        "type": "string",
        "format": "binary",
        "contentMediaType": "text/csv",
        "description": "a class list file (as text/csv bodies); the fields are then unused",
    }
    return {"type": "object", "properties": properties, "additionalProperties": False}


def result_parameters() -> list[dict[str, Any]]:
    """GET /predictdata's query: the form's fields, each optional (none at all is the empty form)."""
    return [{"name": f.name, "in": "query", "required": False, "schema": form_field_schema(f)} for f in FEATURES]


def _decimal_pattern(minimum: float, maximum: float) -> str:
    """Decimal text within [minimum, maximum]; written for the schema's 0-100 scores, checked on import."""
    if (minimum, maximum) != (0.0, 100.0):
        raise ValueError(f"no text pattern for the range {minimum:g}-{maximum:g}: extend _decimal_pattern")
    return r"^(100(\.0*)?|[0-9]{1,2}(\.[0-9]*)?)$"


# Bodies POST /predictdata accepts: media type -> (schema, description). A new body kind is one entry here.
def example_class_list() -> str:
    """A valid class list of one student, built from the schema."""
    header = ",".join(f.name for f in FEATURES)
    row = ",".join("72" if isinstance(f, NumericFeature) else f.categories[0] for f in FEATURES)
    return f"{header}\n{row}\n"


BODY_KINDS: dict[str, tuple[dict[str, Any], str]] = {
    JSON: ({"oneOf": [ref("Student"), ref("Batch")]}, 'one student, or {"instances": [...]} for many; the answer is JSON'),
    FORM: (
        ref("Form"),
        "the teachers' form; a valid student is answered 303 See Other to the result page "
        "(GET /predictdata with the student as query parameters), errors with the form page (422)",
    ),
    MULTIPART: (ref("FormUpload"), "the teachers' form sent as multipart, or a class list file (`class_list`)"),
    "text/csv": (
        {"type": "string", "description": "e.g. " + example_class_list()},
        "a class list: a header row (either header style, an optional student_id) "
        "and one student per row; the answer is CSV for `Accept: text/csv`, else JSON",
    ),
}

INTERVAL = {
    "type": "object",
    "properties": {
        "low": {"type": "number"},
        "high": {"type": "number"},
        "level": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    },
    "required": ["low", "high", "level"],
    "additionalProperties": True,
}
BAND = {
    "type": "object",
    "description": "what the 90 % range says about the cut score (SUPPORT_CUT)",
    "properties": {
        "name": {
            "type": "string",
            "description": "one of "
            + ", ".join(f"`{n}`" for n in BAND_NAMES)
            + " (a string rather than an enum: a client keeps working if a band is added)",
        },
        "label": {"type": "string", "description": "the band in plain words"},
        "cut": {"type": "number", "description": "the cut score the band is decided with"},
        "policy": {
            "type": "string",
            "description": "what decided the band and the chance below the cut (BAND_POLICY): `all_details`, the "
            "prediction from every detail, or `scores_only`, the prediction with the background details at their "
            "average (the scores and the course alone)",
        },
    },
    "required": ["name", "label", "cut", "policy"],
    "additionalProperties": True,
}


def contributions_schema() -> dict[str, Any]:
    """Each feature's additive contribution, in points, by schema name."""
    return {
        "type": "object",
        "properties": {f.name: {"type": "number"} for f in FEATURES},
        "required": [f.name for f in FEATURES],
        "additionalProperties": True,
    }


FACTORS = {
    "type": "object",
    "description": "the exact additive explanation of the model's score: baseline + the contributions = "
    "unclipped_score (before the score is kept within 0-100)",
    "properties": {
        "baseline": {"type": "number"},
        "unclipped_score": {"type": "number"},
        "contributions": ref("Contributions"),
    },
    "required": ["baseline", "unclipped_score", "contributions"],
    "additionalProperties": True,
}
# The properties of one student's answer, each typed: a new answer field is one line here (the answer objects
# also allow properties they do not list, so a client generated from an older document keeps working).
PREDICTION_PROPERTIES: dict[str, dict[str, Any]] = {
    TARGET.name: {
        "type": "number",
        "minimum": TARGET.minimum,
        "maximum": TARGET.maximum,
        "description": f"the predicted {TARGET.label.lower()}",
    },
    "interval": ref("Interval"),
    "band": ref("Band"),
    "factors": {
        "anyOf": [ref("Factors"), {"type": "null"}],
        "description": "null when the served model has no exact factors (`factors_reason` says why)",
    },
    "factors_reason": {"type": "string", "description": "why the answer has no factors"},
    # a batch whose students carry their real math score: each answer checked against it (null: no real score)
    "real_math_score": {"type": ["number", "null"], "description": "the real score sent with the student"},
    "prediction_minus_real": {"type": ["number", "null"], "description": "the reported score minus the real one"},
    "inside_range": {"type": ["boolean", "null"], "description": "whether the real score is inside the range"},
    "band_right": {
        "type": ["boolean", "null"],
        "description": "whether the band's claim held (null when the band made none)",
    },
    "below_cut_probability": {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "description": "the chance that the real score is below the cut, from the same "
        "out-of-fold residuals as the 90 % range (never 0 or 1 before it is "
        "rounded to three decimals)",
    },
    "below_cut_reason": {"type": "string", "description": "why the answer has no chance below the cut"},
    "band_without_background": {
        "type": "string",
        "enum": ["needs_support", "uncertain", "on_track"],
        "description": "the band with the four background details at their training "
        "average; only for models with exact factors",
    },
}
PREDICTION_REQUIRED = (TARGET.name, "interval", "band", "factors")
SINGLE_PROPERTIES: dict[str, dict[str, Any]] = {"model_version": {"type": "string"}}
BATCH_PROPERTIES: dict[str, dict[str, Any]] = {
    "predictions": {"type": "array", "items": {"anyOf": [ref("Prediction"), ref("RowError")]}},
    "model_version": {"type": "string"},
    "factors_reason": {"type": "string", "description": "why the answers have no factors"},
    "evaluation": {
        "type": "object",
        "additionalProperties": True,
        "description": "the batch's answers against the real scores sent with its students",
    },
}
BATCH_REQUIRED = ("predictions", "model_version")

# Error statuses: status -> (when, codes of the ``error`` field).
ERRORS: dict[int, tuple[str, tuple[str, ...]]] = {
    400: (
        f"the body is not JSON, or nests arrays and objects deeper than {MAX_JSON_DEPTH}",
        ("malformed_json", "nesting_too_deep", "bad_request"),
    ),
    413: (
        "the body is over the byte limit (MAX_CONTENT_LENGTH), chunked or not, the batch over MAX_BATCH, or a class "
        "list's row over 256 cells",
        ("request_entity_too_large", "batch_too_large", "too_many_columns"),
    ),
    415: ("there is no body, or it is none of the accepted media types", ("unsupported_media_type",)),
    422: (
        f"fields break the schema's rules: `details` lists the first {MAX_DETAILS}, `more_details` how many more",
        ("validation_failed",),
    ),
    503: ("no verified model is loaded (see /ready)", ("model_unavailable",)),
}
# Answered as JSON whatever the client accepts; the teachers' form never gets it.
API_UNAUTHORIZED = (
    "API_TOKEN_SHA256 is set and a JSON or CSV body came without one of its tokens (`Authorization: Bearer <token>`)"
)


def _error_schema(codes: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The shared error object; ``codes`` (the codes a status may carry) only describe it.

    ``error`` is a string, not an enum, in the document: a client generated from it must not fail on a code
    added later.
    """
    if codes is None:
        return ref("Error")
    return {"allOf": [ref("Error")], "description": "`error` is one of " + ", ".join(f"`{c}`" for c in codes)}


ERROR = {
    "type": "object",
    "description": "every error answer: a code to branch on and a message for people",
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    "required": ["error"],
    "additionalProperties": True,
}


def _validation_schema() -> dict[str, Any]:
    detail = {
        "type": "object",
        "properties": {
            "index": {"type": "integer", "minimum": 0, "description": "the student's position, in batches only"},
            "field": {"type": "string", "maxLength": 64},
            "message": {"type": "string"},
        },
        "required": ["field", "message"],
        "additionalProperties": True,
    }
    return {
        "type": "object",
        "properties": {
            "error": {"type": "string", "description": "`validation_failed`"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": detail, "maxItems": MAX_DETAILS},
            "more_details": {"type": "integer", "minimum": 1},
        },
        "required": ["error", "details"],
        "additionalProperties": True,
    }


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {HTML: {"schema": {"type": "string"}}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(status: int, *, html: bool = True) -> dict[str, Any]:
    """An error answer: JSON for JSON clients, a short page for browsers and forms."""
    when, codes = ERRORS[status]
    schema = ref("ValidationFailed") if status == 422 else _error_schema(codes)
    content: dict[str, Any] = {JSON: {"schema": schema}}
    if html:
        content[HTML] = {"schema": {"type": "string"}}
    return {"description": when, "content": content}


def _common_errors() -> dict[str, Any]:
    """What any route may answer besides its own statuses: a wrong method, or an unknown path."""
    generic = {JSON: {"schema": _error_schema()}, HTML: {"schema": {"type": "string"}}}
    return {"405": {"description": "method not allowed on this path", "content": generic}}


def build_document(max_batch: int = AppConfig.max_batch) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document (``max_batch``: the server's MAX_BATCH)."""
    single = {
        "type": "object",
        "properties": {**PREDICTION_PROPERTIES, **SINGLE_PROPERTIES},
        "required": [*PREDICTION_REQUIRED, *SINGLE_PROPERTIES],
        "additionalProperties": True,
    }
    prediction = {
        "type": "object",
        "properties": PREDICTION_PROPERTIES,
        "required": list(PREDICTION_REQUIRED),
        "additionalProperties": True,
    }
    batch_answer = {
        "type": "object",
        "properties": BATCH_PROPERTIES,
        "required": list(BATCH_REQUIRED),
        "additionalProperties": True,
    }
    batch = {
        "type": "object",
        "properties": {"instances": {"type": "array", "items": ref("LabeledStudent"), "minItems": 1, "maxItems": max_batch}},
        "required": ["instances"],
        "additionalProperties": False,
    }
    token = [{}, {"monitoringToken": []}]
    unauthorized = _json("METRICS_TOKEN is set and the request does not carry it", _error_schema(("unauthorized",)))
    post_responses = {
        "200": {
            "description": "the prediction: JSON for a JSON body, CSV or JSON for a class list, the page of "
            "results for a class list sent with the form",
            "content": {
                JSON: {"schema": {"oneOf": [ref("SinglePrediction"), ref("BatchPrediction")]}},
                HTML: {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        },
        "303": {
            "description": "the form's student is valid: `Location` is the result page, GET /predictdata with "
            "the student as query parameters",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        **{str(status): _error(status) for status in ERRORS},
        "401": _json(API_UNAUTHORIZED, _error_schema(("unauthorized",))),
        **_common_errors(),
    }
    paths: dict[str, Any] = {
        "/": {
            "get": {
                "summary": "landing page",
                "operationId": "index",
                "responses": {"200": _html("the landing page"), **_common_errors()},
            }
        },
        "/predictdata": {
            "get": {
                "summary": "the teachers' form, or one student's result page",
                "operationId": "form",
                "description": "Without query parameters, the empty form. With a student's fields as query "
                "parameters (where a valid form POST redirects), that student's result page.",
                "parameters": result_parameters(),
                "responses": {
                    "200": _html("the empty form, or the result page of the student in the query"),
                    "422": _html("the query does not name a valid student: the form, with each field's error"),
                    "503": _html("the query names a valid student, but no verified model is loaded"),
                    **_common_errors(),
                },
            },
            "post": {
                "summary": "predict the math score of one student or many",
                "operationId": "predict",
                "description": "The JSON and CSV bodies are the API: when the server sets API_TOKEN_SHA256 they need "
                "`Authorization: Bearer <token>` (`apiToken`). The teachers' form bodies need none.",
                "security": [{}, {"apiToken": []}],
                # Not marked required: a client generator (openapi-python-client 0.29.1) then writes a
                # predict module that imports; a POST without a body is answered 415 like any other media type.
                "requestBody": {
                    "required": False,
                    "content": {
                        media: {"schema": schema, "x-description": description}
                        for media, (schema, description) in BODY_KINDS.items()
                    },
                },
                "responses": post_responses,
            },
        },
        "/predictdata/class-list-template.csv": {
            "get": {
                "summary": "a class list to fill in: the header row and one example student",
                "operationId": "class_list_template",
                "responses": {
                    "200": {
                        "description": "CSV with a byte-order mark, as an attachment",
                        "content": {"text/csv": {"schema": {"type": "string"}}},
                    },
                    **_common_errors(),
                },
            }
        },
        "/health": {
            "get": {
                "summary": "liveness",
                "operationId": "health",
                "responses": {
                    "200": _json(
                        "the process is alive",
                        {
                            "type": "object",
                            "properties": {"status": {"const": "ok"}},
                            "required": ["status"],
                            "additionalProperties": True,
                        },
                    ),
                    **_common_errors(),
                },
            }
        },
        "/ready": {
            "get": {
                "summary": "readiness",
                "operationId": "ready",
                "responses": {
                    "200": _json(
                        "a verified model is loaded",
                        {
                            "type": "object",
                            "required": ["status", "model_version"],
                            "additionalProperties": True,
                            "properties": {
                                "status": {"const": "ready"},
                                "model_version": {"type": "string"},
                                "model": {"type": "string"},
                                "source": {
                                    "type": "string",
                                    "description": "an S3 store's URI, or a local store's folder name",
                                },
                                "scorer": {"type": "string"},
                                "last_error": {"type": ["string", "null"]},
                            },
                        },
                    ),
                    "503": _json("no verified model is loaded; `message` says why", _error_schema(("not_ready",))),
                    **_common_errors(),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "security": token,
                "responses": {
                    "200": {
                        "description": "the metrics, in the format the scraper asks for",
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "application/openmetrics-text": {"schema": {"type": "string"}},
                        },
                    },
                    "401": unauthorized,
                    **_common_errors(),
                },
            }
        },
        "/drift": {
            "get": {
                "summary": "drift report of the recent students",
                "operationId": "drift",
                "security": token,
                "responses": {
                    "200": _json(
                        "the report",
                        {
                            "type": "object",
                            "required": ["available"],
                            "properties": {"available": {"type": "boolean"}},
                            "additionalProperties": True,
                        },
                    ),
                    "401": unauthorized,
                    **_common_errors(),
                },
            }
        },
        "/model": {
            "get": {
                "summary": "the model page: card, metrics, errors by group, history",
                "operationId": "model_page",
                "responses": {
                    "200": _html("the model page"),
                    "503": _html("no verified model is loaded"),
                    **_common_errors(),
                },
            }
        },
        "/model.json": {
            "get": {
                "summary": "the model page's content",
                "operationId": "model_json",
                "responses": {
                    "200": _json(
                        "the model card",
                        {
                            "type": "object",
                            "required": ["model_version"],
                            "properties": {"model_version": {"type": "string"}},
                            "additionalProperties": True,
                        },
                    ),
                    "503": _json("no verified model is loaded", _error_schema(("model_unavailable",))),
                    **_common_errors(),
                },
            }
        },
        "/model/plots/{name}": {
            "get": {
                "summary": "a plot made at training",
                "operationId": "model_plot",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": list(PLOTS)}}
                ],
                "responses": {
                    "200": {"description": "the PNG", "content": {"image/png": {"schema": {"type": "string"}}}},
                    "404": _json("no such plot", _error_schema(("not_found",))),
                    "503": _json("no verified model is loaded", _error_schema(("model_unavailable",))),
                    **_common_errors(),
                },
            }
        },
        "/favicon.ico": {
            "get": {
                "summary": "the site icon",
                "operationId": "favicon",
                "responses": {
                    "200": {"description": "the icon", "content": {"image/svg+xml": {"schema": {"type": "string"}}}},
                    **_common_errors(),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "this document",
                "operationId": "openapi",
                "responses": {"200": _json("the OpenAPI 3.1 document", {"type": "object"}), **_common_errors()},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Student math score predictor",
            "version": "1",
            "description": "Predicts a student's math score, with a 90 % range, from their background and "
            "their reading and writing scores.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Student": student_schema(),
                "LabeledStudent": labeled_student_schema(),
                "Batch": batch,
                "Form": form_schema(),
                "FormUpload": upload_schema(),
                "Interval": INTERVAL,
                "Band": BAND,
                "Factors": FACTORS,
                "Contributions": contributions_schema(),
                "Prediction": prediction,
                "SinglePrediction": single,
                "BatchPrediction": batch_answer,
                "RowError": {
                    "type": "object",
                    "required": ["row", "error"],
                    "additionalProperties": True,
                    "properties": {"row": {"type": "integer"}, "error": {"type": "string"}},
                },
                "Error": ERROR,
                "ValidationFailed": _validation_schema(),
            },
            "securitySchemes": {
                "monitoringToken": {"type": "http", "scheme": "bearer", "description": "METRICS_TOKEN, when it is set"},
                "apiToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token whose SHA-256 is listed in API_TOKEN_SHA256, when it is set; "
                    "needed by the JSON and CSV bodies of POST /predictdata",
                },
            },
        },
    }


@functools.cache
def document(max_batch: int) -> dict[str, Any]:
    return build_document(max_batch)


@bp.get("/openapi.json")
def openapi() -> Response:
    return json_response(document(services().config.max_batch))

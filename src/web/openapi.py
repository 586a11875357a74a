"""The API's OpenAPI 3.1 document, served at /openapi.json: the models of src/web/contract.py, put on the routes.

Every schema is pydantic's JSON schema of a model (``components.schemas``); this module only says which model each
route takes and answers, in three tables, so that a change is one edit in one place:

- ``BODY_KINDS``: each body POST /predictdata accepts (media type -> its schema);
- ``ERRORS``: each error status with when it happens and its codes (every error is ``Error``, 422 is
  ``ValidationFailed``);
- the path table in ``build_document``.

Why pydantic's own JSON schema rather than a Flask OpenAPI extension (spectree, flask-openapi3): those validate
requests through their decorators, while this service validates every channel with one column-wise rule set
(src/validation.py) that the models only describe; their document generation would add a second request path
around the views for what one call to ``models_json_schema`` gives.
"""

from __future__ import annotations

import functools
from typing import Any

from flask import Blueprint, Response
from pydantic.json_schema import models_json_schema

from src.components.plots import PLOTS
from src.config import AppConfig
from src.validation import MAX_DETAILS
from src.web.body_guard import MAX_JSON_DEPTH
from src.web.contract import ANSWER_MODELS, CLASS_LIST_SCHEMA, REQUEST_MODELS
from src.web.errors import json_response
from src.web.services import services

bp = Blueprint("openapi", __name__)

JSON = "application/json"
HTML = "text/html"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
CSV = "text/csv"
REF = "#/components/schemas/{model}"


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def component_schemas(max_batch: int) -> dict[str, Any]:
    """Every model's JSON schema, by name: requests as they are validated, answers as they are serialized."""
    _, top = models_json_schema(
        [(m, "validation") for m in REQUEST_MODELS] + [(m, "serialization") for m in ANSWER_MODELS],
        ref_template=REF,
    )
    schemas: dict[str, Any] = top["$defs"]
    for schema in schemas.values():  # property titles repeat the names: left out of the document
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
    schemas["Batch"]["properties"]["instances"]["maxItems"] = max_batch
    return schemas


def result_parameters() -> list[dict[str, Any]]:
    """GET /predictdata's query: the form's fields, each optional (none at all is the empty form)."""
    fields = component_schemas(AppConfig.max_batch)["Form"]["properties"]
    return [{"name": name, "in": "query", "required": False, "schema": schema} for name, schema in fields.items()]


# Bodies POST /predictdata accepts: media type -> (schema, description). A new body kind is one entry here.
BODY_KINDS: dict[str, tuple[dict[str, Any], str]] = {
    JSON: ({"oneOf": [ref("Student"), ref("Batch")]}, 'one student, or {"instances": [...]} for many; the answer is JSON'),
    FORM: (
        ref("Form"),
        "the teachers' form; a valid student is answered 303 See Other to the result page "
        "(GET /predictdata with the student as query parameters), errors with the form page (422)",
    ),
    MULTIPART: (ref("FormUpload"), "the teachers' form sent as multipart, or a class list file (`class_list`)"),
    CSV: (
        CLASS_LIST_SCHEMA,
        "a class list: a header row and one student per row; the answer is CSV for `Accept: text/csv`, else JSON",
    ),
}

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
    """The shared error object; ``codes`` (the codes a status may carry) only describe it (a string, not an enum)."""
    if codes is None:
        return ref("Error")
    return {"allOf": [ref("Error")], "description": "`error` is one of " + ", ".join(f"`{c}`" for c in codes)}


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
                    "200": _json("the process is alive", ref("Health")),
                    **_common_errors(),
                },
            }
        },
        "/ready": {
            "get": {
                "summary": "readiness",
                "operationId": "ready",
                "responses": {
                    "200": _json("a verified model is loaded", ref("Ready")),
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
                    "200": _json("the report", ref("Drift")),
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
                    "200": _json("the model card", ref("ModelCard")),
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
            "schemas": component_schemas(max_batch),
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

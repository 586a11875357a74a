"""One student's JSON answer without Flask's per-request machinery: the API's most frequent request.

A school system posting one student at a time makes ``POST /predictdata`` with a JSON object the request the
service answers most. Through Flask, building the request and application contexts, matching the URL,
dispatching, and making and finishing a ``Response`` cost more than reading, checking and answering the
student together (bench/serving.py). ``SingleStudentLane`` sits between the body guard and Flask and answers
that request itself, by the very functions the Flask view calls (``parse_json``, ``validate_student``,
``single_answer_json``, the observers), when and only when every one of these holds:

- ``POST`` to ``/predictdata`` with a JSON content type, a body the guard has read whole, of at most
  ``MAX_STUDENT_BYTES`` and without the word ``instances`` (a batch is never parsed twice);
- a host Flask can bind its URL map to (a ``Host`` with an empty label or one of more than 63 characters, or
  one outside ``TRUSTED_HOSTS``, is Flask's 400);
- the API token, when ``API_TOKEN_SHA256`` is set, is one of the configured ones;
- the body is one student object (no ``instances``) that passes validation, and a model is loaded.

Anything else, every refusal included (a bad field, a missing token, no model, a batch, a form, any other
route), goes to Flask untouched, which answers it as it always has; an unexpected error while the lane makes
the answer (nothing counted yet) also sends the request to Flask, which answers it or reports the error. An
error of the observers (metrics, drift), once the student may be counted, is answered as the app's handler
answers it (logged, ``request_failed``, JSON 500), never by predicting and counting again. The lane's answer is
the Flask view's answer byte for byte: status, headers and body (``tests/web/test_single_lane.py`` compares
them on many students). It sets ``ROUTE`` in the environ so the request metrics label it as Flask would.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Collection, Iterable
from typing import Any

import numpy as np
from werkzeug.http import parse_options_header
from werkzeug.routing import Map
from werkzeug.wsgi import get_host

from src.validation import parse_json, validate_student
from src.web import errors
from src.web.answers import single_answer_json
from src.web.body_guard import BODY
from src.web.errors import INTERNAL_ERROR, request_failed
from src.web.prediction import JSON_TYPE, bands_for
from src.web.security import bearer_of, token_matches
from src.web.services import Services

PATH = "/predictdata"
# A student object is about 250 bytes; a larger body (a batch, or a student with many unknown fields, which
# validation refuses) goes to Flask unparsed, so that no body is parsed twice.
MAX_STUDENT_BYTES = 4096
ROUTE = "student_math.route"  # the WSGI environ key of the URL rule a request answered outside Flask matched


class SingleStudentLane:
    """WSGI middleware answering one valid student's JSON request; every other request goes to ``wsgi_app``."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], services: Services, app: Any) -> None:
        self.wsgi_app = wsgi_app
        self.services = services
        self.app = app  # the sender of request_failed, as the app's own error handler sends it
        self.bands = bands_for(services.config.support_cut)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        body = environ.get(BODY)
        if (
            body is None
            or len(body) > MAX_STUDENT_BYTES
            or b"instances" in body
            or parse_options_header(environ.get("CONTENT_TYPE", ""))[0].lower() != JSON_TYPE
        ):
            return self.wsgi_app(environ, start_response)  # not one student: not parsed here, Flask parses it once
        if not self._host_bindable(environ):
            return self.wsgi_app(environ, start_response)
        try:
            prepared = self._answer(environ, body)
        except Exception:  # noqa: BLE001 - nothing is counted yet: Flask answers it, and reports the error itself
            prepared = None
        if prepared is None:
            return self.wsgi_app(environ, start_response)
        answer, record, score = prepared
        environ[ROUTE] = PATH
        try:
            self.services.predicted("json", (record,), np.array((score,)))
        except Exception as exc:  # noqa: BLE001 - as the app's handler answers it: counted already, never twice
            errors.logger.exception("unhandled error on POST %s", PATH)  # as the app's handler logs it
            request_failed.send(self.app, exception=exc, method="POST")
            failed = json.dumps({"error": "internal_error", "message": INTERNAL_ERROR}).encode()
            start_response("500 INTERNAL SERVER ERROR", [("Content-Type", JSON_TYPE), ("Content-Length", str(len(failed)))])
            return [failed]
        start_response("200 OK", [("Content-Type", JSON_TYPE), ("Content-Length", str(len(answer)))])
        return [answer]

    def _host_bindable(self, environ: dict[str, Any]) -> bool:
        """Whether Flask would get past binding its URL map to this request's host (``Flask.create_url_adapter``)."""
        config = self.app.config
        trusted = config["TRUSTED_HOSTS"]
        return _bindable(
            self.app.url_map,
            config["SERVER_NAME"],
            None if trusted is None else tuple(trusted),
            environ.get("wsgi.url_scheme", "http"),
            environ.get("HTTP_HOST"),
            environ.get("SERVER_NAME"),
            environ.get("SERVER_PORT"),
        )

    def _answer(self, environ: dict[str, Any], body: bytes) -> tuple[bytes, dict[str, Any], float] | None:
        """The answer's bytes, the student's record and score; None when Flask should answer (a refusal, a batch,
        no model). Changes nothing: the observers are told by the caller, once the answer is made."""
        services = self.services
        digests = services.config.api_token_sha256
        if digests:
            token = bearer_of(environ.get("HTTP_AUTHORIZATION", ""))
            if token is None or not token_matches(token, digests):
                return None
        student = parse_json(body)
        if not isinstance(student, dict) or "instances" in student:
            return None
        record, errors = validate_student(student)
        pipeline = services.slot.pipeline
        if errors or record is None or pipeline is None:
            return None
        text, score = single_answer_json(pipeline, record, self.bands)
        return text.encode(), record, score


@functools.lru_cache(maxsize=256)  # a server sees few hosts; a client sending many only fills 256 places
def _bindable(
    url_map: Map,
    server_name: str | None,
    trusted: Collection[str] | None,
    scheme: str,
    host: str | None,
    server: str | None,
    port: str | None,
) -> bool:
    """What ``Flask.create_url_adapter`` does with the host, without its request object: False where it raises."""
    environ = {
        "wsgi.url_scheme": scheme,
        "SERVER_NAME": server,
        "SERVER_PORT": port,
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": PATH,
        "QUERY_STRING": "",
    }  # only the host can make binding fail
    if host is not None:
        environ["HTTP_HOST"] = host
    try:
        get_host(environ, trusted)  # an untrusted host: SecurityError
        url_map.bind_to_environ(environ, server_name=server_name, subdomain=url_map.default_subdomain or "")
    except Exception:  # noqa: BLE001 - BadHost, SecurityError: Flask answers the request and names the error
        return False
    return True

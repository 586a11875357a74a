"""Request bodies bounded before anything parses them: size (chunked bodies too) and JSON nesting depth.

One WSGI middleware, in front of Flask. A body declared larger than the limit is refused unread (413). A body
without a length (``Transfer-Encoding: chunked``) is read up to the limit and refused (413) once it goes
beyond, never cut and then parsed. A JSON body is scanned for its nesting depth before ``json.loads`` sees it:
Python's parser recurses once per bracket, and a few kilobytes of ``[[[[...`` would end in a RecursionError,
so a body nested deeper than the limit is refused (400). Everything the guard answers is JSON with the usual
``error`` and ``message``; what it lets through reaches Flask as a plain body with a ``Content-Length``. Form
bodies of an allowed, declared length pass through unread (Flask reads them within the same limit).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

# Our documents nest three deep ({"instances": [{...}]}); this leaves room, far below Python's recursion limit.
MAX_JSON_DEPTH = 32
_READ_CHUNK = 64 * 1024
BODY = "student_math.body"  # the WSGI environ key of a body the guard has read whole
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_TOKENS = np.zeros(256, dtype=np.int8)
for _char in b'"\\[]{}':
    _TOKENS[_char] = 1
_OPEN, _CLOSE, _QUOTE, _BACKSLASH = (np.array(list(c), dtype=np.uint8) for c in (b"[{", b"]}", b'"', b"\\"))


class BodyTooLarge(ValueError):
    """The body is longer than the limit."""


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in ``body``, brackets inside strings not counted.

    Linear in the body and vectorised (no Python loop per character): a quote escaped by an odd run of
    backslashes does not end a string; a bracket between an opening and a closing quote is text.
    """
    data = np.frombuffer(body, dtype=np.uint8)
    positions = np.flatnonzero(_TOKENS[data])
    if positions.size == 0:
        return 0
    chars = data[positions]
    escaped = np.zeros(positions.size, dtype=bool)
    backslashes = positions[chars == _BACKSLASH[0]]
    if backslashes.size:
        # Runs of consecutive backslashes; a run of odd length escapes the character right after it.
        breaks = np.flatnonzero(np.diff(backslashes) != 1)
        starts = backslashes[np.concatenate(([0], breaks + 1))]
        ends = backslashes[np.concatenate((breaks, [backslashes.size - 1]))]
        targets = (ends + 1)[(ends - starts + 1) % 2 == 1]
        escaped = np.isin(positions, targets)
    quotes = (chars == _QUOTE[0]) & ~escaped
    inside = (np.cumsum(quotes) - quotes) % 2 == 1  # after an odd number of real quotes: within a string
    structural = ~inside & ~quotes
    step = np.where(np.isin(chars, _OPEN), 1, np.where(np.isin(chars, _CLOSE), -1, 0)) * structural
    return int(np.max(np.cumsum(step), initial=0))


def read_bounded(stream: Any, limit: int, length: int | None) -> bytes:
    """Read the body (``length`` bytes, or to its end when unknown); BodyTooLarge past ``limit`` bytes."""
    if length is not None:
        if length > limit:
            raise BodyTooLarge(length)
        return stream.read(length) if length else b""
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(_READ_CHUNK, limit - size + 1))  # one byte past the limit tells it all
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size)
        parts.append(chunk)


class BodyGuard:
    """WSGI middleware enforcing ``max_bytes`` on every body and ``max_depth`` on JSON bodies."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], max_bytes: int,
                 max_depth: int = MAX_JSON_DEPTH) -> None:
        self.wsgi_app = wsgi_app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET") not in _BODY_METHODS:
            return self.wsgi_app(environ, start_response)
        raw_length = environ.get("CONTENT_LENGTH") or ""
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        is_json = _is_json(environ.get("CONTENT_TYPE", ""))
        if not chunked and not is_json and raw_length.isdigit() and int(raw_length) <= self.max_bytes:
            return self.wsgi_app(environ, start_response)  # a form of known, allowed size: Flask reads it
        if not chunked and not raw_length.isdigit() and raw_length:
            return _answer(start_response, 400, "bad_request", "the Content-Length header is not a number")
        length = None if chunked or not raw_length else int(raw_length)
        try:
            body = read_bounded(environ["wsgi.input"], self.max_bytes, length)
        except BodyTooLarge:
            _drain(environ["wsgi.input"], self.max_bytes if length is None else min(length, self.max_bytes))
            environ["wsgi.input"] = io.BytesIO()
            return _answer(start_response, 413, "request_entity_too_large",
                           f"the request body is larger than the limit of {self.max_bytes} bytes")
        # The depth cannot exceed the number of opening brackets: counting them (C speed) spares the scan for
        # every body of a few brackets, such as a single student's.
        if is_json and body.count(b"[") + body.count(b"{") > self.max_depth:
            depth = json_depth(body)
            if depth > self.max_depth:
                return _answer(start_response, 400, "nesting_too_deep",
                               f"the JSON body nests arrays and objects {depth} deep; at most {self.max_depth} "
                               "levels are accepted")
        environ["wsgi.input"] = io.BytesIO(body)
        environ[BODY] = body  # read once: the app takes it from here rather than reading the stream again
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ.pop("wsgi.input_terminated", None)
        return self.wsgi_app(environ, start_response)


def _drain(stream: Any, budget: int) -> None:
    """Read and drop up to ``budget`` more bytes, so that a client still sending reads the 413 rather than a reset.

    A client sending far more than that gets the answer and a closed connection (``Connection: close``).
    """
    while budget > 0:
        chunk = stream.read(min(_READ_CHUNK, budget))
        if not chunk:
            return
        budget -= len(chunk)


def _is_json(content_type: str) -> bool:
    mimetype = content_type.split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or mimetype.endswith("+json")


def _answer(start_response: Callable[..., Any], status: int, error: str, message: str) -> list[bytes]:
    body = json.dumps({"error": error, "message": message}).encode()
    reason = {400: "BAD REQUEST", 413: "REQUEST ENTITY TOO LARGE"}[status]
    start_response(f"{status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                          ("Connection", "close")])
    return [body]


def request_body(environ: dict[str, Any], read: Callable[[], bytes]) -> bytes:
    """The body the guard read, or ``read()`` when it passed the request through unread."""
    body = environ.get(BODY)
    return read() if body is None else body

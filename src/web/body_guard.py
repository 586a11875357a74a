"""Request bodies bounded before anything parses them: size, time, JSON nesting depth and JSON value count.

One WSGI middleware, in front of Flask, reads every body whole before the app sees it:

- size: a body declared larger than the limit is refused unread (413); a body without a length
  (``Transfer-Encoding: chunked``) is read up to the limit and refused (413) once it goes beyond, never cut
  and then parsed;
- time: the whole body must arrive within ``body_timeout`` seconds of the request reaching the app. A client
  that stalls, or trickles a byte now and then, is answered 408 and its connection closed at that deadline
  (before each read the socket may wait only the time left: ``Deadline``);
- work: a body over ``LARGE_BODY`` bytes (a few hundred students) is checked, parsed and answered in one of a
  worker's ``HEAVY_SLOTS`` (``HeavyWork``), whatever its content type: the memory a worker spends on bodies is
  a few large parses, never one per connection, and under gevent's workers that work runs beside the event
  loop, not in it. Afterwards the allocator gives the freed memory back (``malloc_trim``);
- JSON nesting: Python's parser recurses once per bracket, and a few kilobytes of ``[[[[...`` would end in a
  RecursionError, so a body nested deeper than the limit is refused (400);
- JSON size in objects: ``json.loads`` turns each ``{}`` or ``[]`` of a 16 MB body into a Python object of
  60 bytes or more, gigabytes in all; a body with more values than a full batch can hold is refused (413).

The depth and value scan (``src.json_scan``) is one compiled pass over the bytes: no memory beyond the body.
Everything the guard answers is JSON with the usual ``error`` and ``message``; what it lets through reaches
Flask as a plain body with a ``Content-Length``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from src.json_scan import JsonText, scan
from src.json_scan import warm_up as warm_up_scan

logger = logging.getLogger(__name__)

# Our documents nest three deep ({"instances": [{...}]}); this leaves room, far below Python's recursion limit.
MAX_JSON_DEPTH = 32
# JSON values one student may take: 7 fields are 7 keys, 7 values and their separators (about 16 tokens);
# twice that leaves room for a client's extra fields, which are refused one by one with their names.
VALUES_PER_STUDENT = 32
BODY_TIMEOUT = 10.0  # seconds for a whole body, by default
# Fields a urlencoded form may hold (Flask's MAX_FORM_PARTS for multipart): werkzeug parses a urlencoded body
# whole, and 16 MB of "a=&a=&..." are millions of Python strings, nearly a gigabyte.
MAX_FORM_FIELDS = 1_000
# Bodies above this many bytes are "large": a worker parses HEAVY_SLOTS of them at a time (everything else is
# served meanwhile), so that its memory is bounded by a few large parses, not one per connection. A parse costs
# far more memory than its body (a 262 KB header of commas is 262,127 cells), so the mark is low: a class list
# of about 300 students; a single student or a class's list stays under it.
LARGE_BODY = 16 * 1024
# One at a time: the work holds Python's interpreter lock, so a second thread would not make it faster, and each
# more thread wanting the lock delays the event loop's turns (``/health``) further.
HEAVY_SLOTS = 1
_READ_CHUNK = 64 * 1024
T = TypeVar("T")
BODY = "student_math.body"  # the WSGI environ key of a body the guard has read whole
JSON_TEXT = "student_math.json_text"  # and of what its scan found in that body, when it scanned all of it
SOCKET = "gunicorn.socket"  # where gunicorn puts the client's socket in the WSGI environ (checked on 26.2)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyTooLarge(ValueError):
    """The body is longer than the limit."""


class BodyTimedOut(TimeoutError):
    """The body did not arrive whole within the deadline."""


def read_bounded(stream: Any, limit: int, length: int | None, deadline: Deadline | None = None) -> bytes:
    """Read the body (``length`` bytes, or to its end when unknown).

    BodyTooLarge past ``limit`` bytes (a declared length over it is refused before any read); BodyTimedOut when
    ``deadline`` passed before the body was whole.
    """
    if length is not None and length > limit:
        raise BodyTooLarge(length)
    parts: list[bytes] = []
    size = 0
    wanted = limit + 1 if length is None else length  # one byte past the limit tells it all
    try:
        with deadline.whole() if deadline is not None else contextlib.nullcontext():
            while size < wanted:
                if deadline is not None:
                    deadline.arm()
                chunk = stream.read(min(_READ_CHUNK, wanted - size))
                if not chunk:
                    break
                size += len(chunk)
                parts.append(chunk)
    except (BlockingIOError, TimeoutError):  # the socket waited past the deadline
        raise BodyTimedOut(size) from None
    if deadline is not None and deadline.expired:
        raise BodyTimedOut(size)
    if length is None and size > limit:
        raise BodyTooLarge(size)
    return b"".join(parts)


class Deadline:
    """When one request's body must be whole.

    Under gevent's workers ``whole()`` is a ``gevent.Timeout`` over the whole read: one read of gunicorn's body
    reader receives many times until it has the bytes it was asked for, so only a timer over the read bounds a
    client that sends a byte now and then. Elsewhere, before each read the client's socket may wait only the time
    left (which bounds a stalled client, not a trickling one). The socket's own timeout is given back when the
    body is read (``finish``), for the answer and the next request.
    """

    def __init__(self, sock: Any, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.sock = sock
        self._previous = sock.gettimeout()

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def whole(self) -> Any:
        """A context in which reading past the deadline raises TimeoutError (gevent's workers), else a no-op."""
        if not _gevent_patched():
            return contextlib.nullcontext()
        import gevent

        return gevent.Timeout(max(self.at - time.monotonic(), 0.001), TimeoutError)

    def arm(self) -> None:
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError("the body's deadline passed")
        self.sock.settimeout(left)

    def finish(self) -> None:
        try:
            self.sock.settimeout(self._previous)
        except OSError:  # the client is gone already
            pass

    def stop_reading(self) -> None:
        """No more of this client's bytes: its late body is not drained, and the connection ends after the answer.

        gunicorn ignores an app's ``Connection: close``; with the reading side shut, its next read finds the end
        and it closes the connection once the 408 is sent."""
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:  # the client is gone already
            pass


def malloc_trim() -> None:
    """Give the C allocator's free memory back to the system (glibc's ``malloc_trim``; nothing elsewhere).

    After a large body's parse the freed pages would otherwise stay with the worker: a burst of large requests
    would leave each worker as big as its busiest moment."""
    trim = _libc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _libc_trim() -> Any:
    try:  # the process's own symbols: glibc's malloc_trim where the C library is glibc
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return None


def _gevent_patched() -> bool:
    """Whether this process runs under gevent's monkey-patching (gunicorn's gevent workers)."""
    if "gevent.monkey" not in sys.modules:  # never imports gevent where nothing did
        return False
    from gevent import monkey

    return monkey.is_module_patched("threading")


def _trimmed(work: Callable[[], T]) -> T:
    try:
        return work()
    finally:
        malloc_trim()


class HeavyWork:
    """Where a worker does the work of its large bodies: ``slots`` at a time, each waiting ``wait`` s at most.

    Under gevent's workers (scripts/run.sh, the Procfile) the work runs in a pool of ``slots`` native threads:
    parsing and answering thousands of students takes the CPU for a while, and done in a greenlet it would hold
    every other connection of the worker (``/health`` included) that long; in a native thread the worker's event
    loop keeps answering meanwhile. Under a threaded server it runs in the request's own thread.
    """

    def __init__(self, slots: int, wait: float) -> None:
        self.slots = slots
        self.wait = wait
        self._turns = threading.BoundedSemaphore(slots)
        self._pool: Any = None
        self._pool_pid = 0

    def run(self, work: Callable[[], T]) -> T | None:
        """``work()``'s result, or None when no slot came free in time."""
        if not self._turns.acquire(timeout=self.wait):
            return None
        try:
            pool = self._native_pool()
            return _trimmed(work) if pool is None else pool.apply(_trimmed, (work,))
        finally:
            self._turns.release()

    def _native_pool(self) -> Any:
        if not _gevent_patched():
            return None
        if self._pool_pid != os.getpid():  # a pool's threads do not survive a fork: one per worker
            from gevent.threadpool import ThreadPool

            self._pool, self._pool_pid = ThreadPool(self.slots), os.getpid()
        return self._pool


class BodyGuard:
    """WSGI middleware enforcing ``max_bytes`` and ``timeout`` on every body, and the JSON limits.

    ``max_values``: the most JSON values (objects, arrays, scalars) a body may hold; None for no limit.
    """

    def __init__(
        self,
        wsgi_app: Callable[..., Iterable[bytes]],
        max_bytes: int,
        max_depth: int = MAX_JSON_DEPTH,
        max_values: int | None = None,
        timeout: float = BODY_TIMEOUT,
        heavy_slots: int = HEAVY_SLOTS,
    ) -> None:
        warm_up_scan()  # compiled (or loaded from numba's cache) now, not at the first large body
        self.wsgi_app = wsgi_app
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.max_values = max_values
        self.timeout = timeout
        self.heavy = HeavyWork(heavy_slots, timeout)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() not in _BODY_METHODS:  # werkzeug reads "post" as POST
            return self.wsgi_app(environ, start_response)
        raw_length = environ.get("CONTENT_LENGTH") or ""
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if not chunked and not (raw_length.isascii() and raw_length.isdigit()) and raw_length:  # "١٩١" is not
            return _answer(start_response, 400, "bad_request", "the Content-Length header is not a number")
        length = None if chunked or not raw_length else int(raw_length)
        body_or_refusal = self._read(environ, start_response, length)
        if not isinstance(body_or_refusal, bytes):
            return body_or_refusal
        body = body_or_refusal
        if len(body) <= LARGE_BODY:
            return self._checked(environ, start_response, body)
        # A large body: one of the worker's few heavy slots, for checking it, parsing it and making the answer (the
        # app returns its answer made; sending it needs no slot). Reading it needed none: a client that sends
        # slowly holds a connection, not a slot.
        answered = self.heavy.run(lambda: list(self._checked(environ, start_response, body)))
        if answered is None:
            return _answer(
                start_response,
                503,
                "busy",
                "the server is answering other large requests; try again in a few seconds",
                retry_after=True,
            )
        return answered

    def _read(
        self, environ: dict[str, Any], start_response: Callable[..., Any], length: int | None
    ) -> bytes | Iterable[bytes]:
        """The whole body, or the answer refusing it."""
        sock = environ.get(SOCKET)
        deadline = None
        if sock is not None and length != 0 and (length is None or length <= self.max_bytes):
            deadline = Deadline(sock, self.timeout)
        try:
            body = read_bounded(environ["wsgi.input"], self.max_bytes, length, deadline)
        except BodyTooLarge:
            # A declared length over the limit is refused unread. A chunked body past the limit is drained up to
            # the limit again (within the deadline), so that a client still sending reads the 413 rather than a
            # reset; gunicorn drains a little more and closes the connection.
            if length is None:
                _drain(environ["wsgi.input"], self.max_bytes, deadline)
            environ["wsgi.input"] = io.BytesIO()
            return _answer(
                start_response,
                413,
                "request_entity_too_large",
                f"the request body is larger than the limit of {self.max_bytes} bytes",
            )
        except BodyTimedOut as late:
            if deadline is not None:
                deadline.stop_reading()
            environ["wsgi.input"] = io.BytesIO()
            logger.warning(
                "request body not whole after %.0f s (%d bytes came): connection closed", self.timeout, late.args[0]
            )
            return _answer(
                start_response,
                408,
                "request_timeout",
                f"the request body did not arrive whole within {self.timeout:g} seconds",
            )
        finally:
            if deadline is not None:
                deadline.finish()
        if length is not None and len(body) < length:
            environ["wsgi.input"] = io.BytesIO()
            return _answer(
                start_response,
                400,
                "bad_request",
                f"the body ended after {len(body)} of the {length} bytes its Content-Length declares",
            )
        return body

    def _checked(self, environ: dict[str, Any], start_response: Callable[..., Any], body: bytes) -> Iterable[bytes]:
        """The app's answer to a body read whole, once it passed the JSON and form limits."""
        content_type = environ.get("CONTENT_TYPE", "")
        if _is_json(content_type):
            refusal = self._check_json(environ, body, start_response)
            if refusal is not None:
                return refusal
        elif content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded":
            fields = body.count(b"&") + 1
            if fields > MAX_FORM_FIELDS:
                return _answer(
                    start_response,
                    413,
                    "too_many_fields",
                    f"the form has {fields} fields; at most {MAX_FORM_FIELDS} are accepted",
                )
        environ["wsgi.input"] = io.BytesIO(body)
        environ[BODY] = body  # read once: the app takes it from here rather than reading the stream again
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ.pop("wsgi.input_terminated", None)
        return self.wsgi_app(environ, start_response)

    def _check_json(self, environ: dict[str, Any], body: bytes, start_response: Callable[..., Any]) -> list[bytes] | None:
        # Depth and values cannot exceed the number of brackets and separators: counting the brackets (C speed)
        # spares the scan for every body of a few, such as a single student's.
        brackets = body.count(b"[") + body.count(b"{")
        if brackets <= self.max_depth and (self.max_values is None or len(body) < self.max_values):
            return None
        shape = scan(body, self.max_depth, self.max_values)
        if not shape.stopped:  # the parser need not scan it again (src.validation.parse_json)
            environ[JSON_TEXT] = shape
        if shape.depth > self.max_depth:
            return _answer(
                start_response,
                400,
                "nesting_too_deep",
                f"the JSON body nests arrays and objects {shape.depth} deep; at most {self.max_depth} levels are accepted",
            )
        if self.max_values is not None and shape.values > self.max_values:
            return _answer(
                start_response,
                413,
                "too_many_values",
                f"the JSON body holds more than {self.max_values} values, the most accepted "
                f"({VALUES_PER_STUDENT} per student of a full batch)",
            )
        return None


def _drain(stream: Any, budget: int, deadline: Deadline | None) -> None:
    """Read and drop up to ``budget`` more bytes, until the deadline at most."""
    try:
        while budget > 0:
            if deadline is not None:
                deadline.arm()
            chunk = stream.read(min(_READ_CHUNK, budget))
            if not chunk:
                return
            budget -= len(chunk)
    except OSError:  # the client left, or the deadline passed (TimeoutError): the answer is the same
        return


def _is_json(content_type: str) -> bool:
    mimetype = content_type.split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or mimetype.endswith("+json")


_REASONS = {400: "BAD REQUEST", 408: "REQUEST TIMEOUT", 413: "REQUEST ENTITY TOO LARGE", 503: "SERVICE UNAVAILABLE"}


def _answer(
    start_response: Callable[..., Any], status: int, error: str, message: str, retry_after: bool = False
) -> list[bytes]:
    body = json.dumps({"error": error, "message": message}).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        ("X-Content-Type-Options", "nosniff"),
    ]
    if retry_after:
        headers.append(("Retry-After", "5"))
    start_response(f"{status} {_REASONS[status]}", headers)
    return [body]


def request_body(environ: dict[str, Any], read: Callable[[], bytes]) -> bytes:
    """The body the guard read, or ``read()`` when it passed the request through unread."""
    body = environ.get(BODY)
    return read() if body is None else body


def scanned_json(environ: dict[str, Any]) -> JsonText | None:
    """What the guard's scan found in the body ``request_body`` gives, when it scanned all of it."""
    return environ.get(JSON_TEXT)

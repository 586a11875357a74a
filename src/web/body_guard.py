"""Request bodies bounded before anything parses them: size, time, JSON nesting depth and JSON value count.

One WSGI middleware, in front of Flask, reads every body whole before the app sees it:

- size: a body declared larger than the limit is refused unread (413); a body without a length
  (``Transfer-Encoding: chunked``) is read up to the limit and refused (413) once it goes beyond, never cut
  and then parsed;
- time: the whole body must arrive within ``body_timeout`` seconds of the request reaching the app. A client
  that stalls, or trickles a byte now and then, is answered 408 and its connection closed at that deadline
  (a watchdog thread shuts the socket's reading side, which ends the blocked read at once);
- JSON nesting: Python's parser recurses once per bracket, and a few kilobytes of ``[[[[...`` would end in a
  RecursionError, so a body nested deeper than the limit is refused (400);
- JSON size in objects: ``json.loads`` turns each ``{}`` or ``[]`` of a 16 MB body into a Python object of
  60 bytes or more, gigabytes in all; a body with more values than a full batch can hold is refused (413).

The depth and value scan runs over fixed-size blocks, so its own memory does not grow with the body.
Everything the guard answers is JSON with the usual ``error`` and ``message``; what it lets through reaches
Flask as a plain body with a ``Content-Length``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

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
# Bodies above this many bytes are "large": a worker handles HEAVY_SLOTS of them at a time (its threads serve
# everything else meanwhile), so that its memory is bounded by a few large bodies, not one per thread.
LARGE_BODY = 256 * 1024
HEAVY_SLOTS = 2
_READ_CHUNK = 64 * 1024
_SCAN_BLOCK = 1 << 20  # bytes scanned at a time for depth and values: a few MB of arrays whatever the body
BODY = "student_math.body"  # the WSGI environ key of a body the guard has read whole
SOCKET = "gunicorn.socket"  # where gunicorn puts the client's socket in the WSGI environ (checked on 26.2)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_TOKENS = np.zeros(256, dtype=np.int8)
for _char in b'"\\[]{},:':
    _TOKENS[_char] = 1
_TOKEN_BYTES = bytes(_TOKENS.astype(np.uint8))  # the same table for bytes.translate
_QUOTE, _BACKSLASH = (np.array(list(c), dtype=np.uint8) for c in (b'"', b"\\"))
_STEP = np.zeros(256, dtype=np.int8)  # +1 for an opening bracket, -1 for a closing one
_STEP[list(b"[{")] = 1
_STEP[list(b"]}")] = -1
_SEPARATES = np.zeros(256, dtype=bool)  # what starts one more value: a separator or an opening bracket
_SEPARATES[list(b",:[{")] = True


class BodyTooLarge(ValueError):
    """The body is longer than the limit."""


@dataclass(frozen=True)
class JsonShape:
    """How deep a JSON text nests and how many values it can hold at most (separators and openings + 1)."""

    depth: int
    values: int


def json_shape(body: bytes, stop_depth: int | None = None, stop_values: int | None = None) -> JsonShape:
    """The nesting depth and value bound of ``body``, brackets and separators inside strings not counted.

    Linear in the body, vectorised over blocks of ``_SCAN_BLOCK`` bytes (no Python loop per character, and no
    array as long as the body): a quote escaped by an odd run of backslashes does not end a string; a bracket
    between an opening and a closing quote is text. The state between blocks is whether a string is open,
    whether the block's first character is escaped, and the depth so far. The scan stops after the block where
    the depth passes ``stop_depth`` or the values pass ``stop_values``: the figures are then lower bounds, past
    the limit all the same, and a hostile body costs one block's work.
    """
    depth = deepest = separators = 0
    inside = escaped_first = False
    for start in range(0, len(body), _SCAN_BLOCK):
        data = np.frombuffer(body, dtype=np.uint8, count=min(_SCAN_BLOCK, len(body) - start), offset=start)
        ends_escaping = _trailing_backslashes(data, escaped_first) % 2 == 1
        if inside and body.find(b'"', start, start + data.size) < 0:  # the block is text of one open string
            escaped_first = ends_escaping
            continue
        block = body[start : start + data.size].translate(_TOKEN_BYTES)  # 1 at each token, 0 elsewhere: C speed
        positions = np.flatnonzero(np.frombuffer(block, dtype=np.bool_)).astype(np.int32)
        if positions.size:
            chars = data[positions]
            escaped = np.zeros(positions.size, dtype=bool)
            if escaped_first and positions[0] == 0:
                escaped[0] = True
            backslashes = positions[chars == _BACKSLASH[0]]
            if backslashes.size:
                # Runs of consecutive backslashes; a run of odd length escapes the character right after it.
                breaks = np.flatnonzero(np.diff(backslashes) != 1)
                starts = backslashes[np.concatenate(([0], breaks + 1))]
                ends = backslashes[np.concatenate((breaks, [backslashes.size - 1]))]
                lengths = ends - starts + 1 + ((starts == 0) & escaped_first)  # a run carried from the last block
                targets = (ends + 1)[lengths % 2 == 1]
                escaped |= np.isin(positions, targets)
            quotes = (chars == _QUOTE[0]) & ~escaped
            before = np.cumsum(quotes, dtype=np.int32) - quotes
            structural = ~((before % 2 == 1) ^ inside) & ~quotes  # outside strings, and not a quote
            step = _STEP[chars] * structural
            running = depth + np.cumsum(step, dtype=np.int64)
            deepest = max(deepest, int(running.max(initial=depth)))
            depth = int(running[-1])
            separators += int(np.count_nonzero(_SEPARATES[chars] & structural))
            inside = bool(inside ^ (int(np.count_nonzero(quotes)) % 2 == 1))
            if (stop_depth is not None and deepest > stop_depth) or (
                stop_values is not None and separators + 1 > stop_values
            ):
                break
        escaped_first = ends_escaping
    return JsonShape(deepest, separators + 1 if body.strip() else 0)


def _trailing_backslashes(data: np.ndarray, carried: bool) -> int:
    """The length of the run of backslashes that ends the block (a whole-block run adds the carried escape)."""
    if data.size and data[-1] != _BACKSLASH[0]:
        return 0
    others = np.flatnonzero(data != _BACKSLASH[0])
    if others.size == 0:
        return data.size + int(carried)
    return data.size - 1 - int(others[-1])


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in ``body``, brackets inside strings not counted."""
    return json_shape(body).depth


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
        while size < wanted:
            chunk = stream.read(min(_READ_CHUNK, wanted - size))
            if not chunk:
                break
            size += len(chunk)
            parts.append(chunk)
    except Exception as err:
        # The watchdog ended the read (whatever the stream raised then), or the socket's own receive timeout did.
        if (deadline is not None and deadline.expired) or isinstance(err, (BlockingIOError, TimeoutError)):
            raise BodyTimedOut(size) from None
        raise
    if deadline is not None and deadline.expired:
        raise BodyTimedOut(size)
    if length is None and size > limit:
        raise BodyTooLarge(size)
    return b"".join(parts)


@dataclass
class Deadline:
    """When one request's body must be whole, and the socket the watchdog shuts if it is not."""

    at: float
    sock: Any
    expired: bool = False
    done: bool = False

    def finish(self) -> None:
        """The body is read (or refused): the watchdog leaves this socket alone, and no longer holds it."""
        self.done = True
        self.sock = None


# The watchdog looks at its queues at least this often, so a deadline set while it sleeps is seen in time.
WATCHDOG_POLL = 0.25


class Watchdog:
    """One thread per process that shuts the reading side of a socket whose body is late.

    ``shutdown(SHUT_RD)`` makes a blocked ``recv`` return at once with no data, whatever the worker class
    (sync or threaded) and however the client spaces its bytes; the answer can still be written.

    A request costs one append to a queue, without a lock or a wake-up: deadlines of one length arrive in the
    order they fall due, so each length has its own first-in-first-out queue and the thread only looks at
    their heads. It sleeps until the earliest head falls due, or ``WATCHDOG_POLL`` seconds (at most half the
    shortest deadline length) when the queues are empty, so a deadline is never seen late. (A condition variable
    woken on every new earliest deadline cost a tenth of a single-student request's time under load: the
    thread emptied the queue between requests and was woken again by the next one.)
    """

    def __init__(self) -> None:
        self._queues: dict[float, deque[Deadline]] = {}
        self._poll = WATCHDOG_POLL
        self._pid = 0
        self._starting = threading.Lock()

    def watch(self, sock: Any, seconds: float) -> Deadline:
        deadline = Deadline(time.monotonic() + seconds, sock)
        # A thread does not survive a fork: each process starts its own, once its first deadline is queued (so
        # that the thread's first sleep already knows it).
        starting = self._pid != os.getpid() and self._claim()
        queue = self._queues.get(seconds)
        if queue is None:
            queue = self._queues.setdefault(seconds, deque())
            self._poll = min(self._poll, seconds / 2)
        queue.append(deadline)
        if starting:
            threading.Thread(target=self._run, name="body-watchdog", daemon=True).start()
        return deadline

    def _claim(self) -> bool:
        """True for the one caller in this process that must start the thread (with queues of its own)."""
        with self._starting:
            if self._pid == os.getpid():
                return False
            self._queues = {}
            self._pid = os.getpid()
            return True

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            wake = now + self._poll
            for queue in list(self._queues.values()):
                while queue and (queue[0].done or queue[0].at <= now):
                    first = queue.popleft()
                    if not first.done:
                        self._expire(first)
                if queue:
                    wake = min(wake, queue[0].at)
            time.sleep(max(wake - time.monotonic(), 0.001))

    @staticmethod
    def _expire(deadline: Deadline) -> None:
        deadline.expired = True
        sock = deadline.sock
        try:
            if sock is not None:
                sock.shutdown(socket.SHUT_RD)
        except OSError:  # the client is gone already
            pass


_WATCHDOG = Watchdog()


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
        self.wsgi_app = wsgi_app
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.max_values = max_values
        self.timeout = timeout
        self.heavy = threading.BoundedSemaphore(heavy_slots)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() not in _BODY_METHODS:  # werkzeug reads "post" as POST
            return self.wsgi_app(environ, start_response)
        raw_length = environ.get("CONTENT_LENGTH") or ""
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if not chunked and not (raw_length.isascii() and raw_length.isdigit()) and raw_length:  # "١٩١" is not
            return _answer(start_response, 400, "bad_request", "the Content-Length header is not a number")
        length = None if chunked or not raw_length else int(raw_length)
        if length is not None and (length <= LARGE_BODY or length > self.max_bytes):
            return self._guarded(environ, start_response, length)
        # A large body, or one of unknown length: one of the worker's few heavy slots, for reading it, parsing it
        # and making the answer (the app returns its answer made; sending it needs no slot).
        if not self.heavy.acquire(timeout=self.timeout):
            return _answer(
                start_response,
                503,
                "busy",
                "the server is answering other large requests; try again in a few seconds",
                retry_after=True,
            )
        try:
            return self._guarded(environ, start_response, length)
        finally:
            self.heavy.release()

    def _guarded(self, environ: dict[str, Any], start_response: Callable[..., Any], length: int | None) -> Iterable[bytes]:
        sock = environ.get(SOCKET)
        deadline = None
        if sock is not None and length != 0 and (length is None or length <= self.max_bytes):
            deadline = _WATCHDOG.watch(sock, self.timeout)
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
        content_type = environ.get("CONTENT_TYPE", "")
        if _is_json(content_type):
            refusal = self._check_json(body, start_response)
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

    def _check_json(self, body: bytes, start_response: Callable[..., Any]) -> list[bytes] | None:
        # Depth and values cannot exceed the number of brackets and separators: counting the brackets (C speed)
        # spares the scan for every body of a few, such as a single student's.
        brackets = body.count(b"[") + body.count(b"{")
        if brackets <= self.max_depth and (self.max_values is None or len(body) < self.max_values):
            return None
        shape = json_shape(body, self.max_depth, self.max_values)
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
        while budget > 0 and not (deadline is not None and deadline.expired):
            chunk = stream.read(min(_READ_CHUNK, budget))
            if not chunk:
                return
            budget -= len(chunk)
    except Exception:  # noqa: BLE001 - the client left, or the watchdog ended the read: the answer is the same
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

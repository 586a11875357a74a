"""Bodies are bounded before parsing: nesting depth (400) and size, chunked bodies included (413)."""

import io
import json
import time

import pytest

from src.json_scan import scan
from src.web.body_guard import MAX_JSON_DEPTH, BodyTooLarge, read_bounded
from tests.servers import PROJECT


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b'{"a": 1}', 1),
        (b'{"instances": [{"a": 1}, {"b": [1, 2]}]}', 4),
        (b'{"a": "[[[[{{{{"}', 1),  # brackets inside a string are text
        (b'{"a": "quote \\" [[[[ still text"}', 1),  # an escaped quote does not end the string
        (b'{"a": "ends in a backslash \\\\", "b": [[1]]}', 3),  # an escaped backslash does not escape the quote
        (b"[[[]]] [[[[]]]]", 4),
        (b"", 0),
        (b"   7 ", 0),
    ],
)
def test_json_depth_counts_only_structural_brackets(body, depth):
    assert scan(body).depth == depth


def test_json_depth_agrees_with_the_parser_on_generated_documents():
    import random

    rng = random.Random(3)

    def document(level: int):
        if level == 0 or rng.random() < 0.2:
            return rng.choice(['[]{}\\"x', 1.5, None, "a\\b", '"]"'])
        if rng.random() < 0.5:
            return [document(level - 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(["k", "[", "\\", '"{']) + str(i): document(level - 1) for i in range(rng.randint(0, 3))}

    def parsed_depth(value) -> int:
        if isinstance(value, list):
            return 1 + max((parsed_depth(v) for v in value), default=0)
        if isinstance(value, dict):
            return 1 + max((parsed_depth(v) for v in value.values()), default=0)
        return 0

    for _ in range(300):
        value = document(8)
        assert scan(json.dumps(value).encode()).depth == parsed_depth(value)


def test_read_bounded_refuses_beyond_the_limit_without_reading_it_all():
    stream = io.BytesIO(b"x" * 10_000)
    with pytest.raises(BodyTooLarge):
        read_bounded(stream, 1_000, None)
    assert stream.tell() < 10_000
    assert read_bounded(io.BytesIO(b"abc"), 3, None) == b"abc"
    with pytest.raises(BodyTooLarge):
        read_bounded(io.BytesIO(b""), 3, 4)  # a declared length over the limit is refused unread


def test_a_thousand_nested_brackets_answer_400_naming_the_limit(client):
    body = b'{"instances": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    response = client.post("/predictdata", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == "nesting_too_deep"
    assert f"at most {MAX_JSON_DEPTH} levels" in response.get_json()["message"]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16", "utf-32"])
def test_utf16_and_utf32_bodies_are_held_to_the_same_limits(client, encoding):
    # in UTF-16-LE "\u2200" is the bytes 00 22: read as UTF-8 bytes, a quote opening a string that hides the rest
    deep = ('["\u2200",' + "[" * 1000 + "]" * 1000 + "]").encode(encoding)
    response = client.post("/predictdata", data=deep, content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error"] == "nesting_too_deep"
    many = ('["\u2200",' + "{}," * 400_000 + "{}]").encode(encoding)
    response = client.post("/predictdata", data=many, content_type="application/json")
    assert response.status_code == 413 and response.get_json()["error"] == "too_many_values"


@pytest.mark.parametrize(("depth", "status"), [(MAX_JSON_DEPTH, 422), (MAX_JSON_DEPTH + 1, 400)])
def test_the_limit_holds_exactly_at_its_edge(client, depth, status):
    body = b"[" * (depth - 1) + b"{}" + b"]" * (depth - 1)  # as many brackets as levels: the fewest possible
    assert client.post("/predictdata", data=body, content_type="application/json").status_code == status


@pytest.mark.parametrize("method", ["post", "Post"])
def test_a_method_in_lower_case_is_guarded_as_flask_reads_it(app, method):
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    body = b'{"instances": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    environ = EnvironBuilder(method="POST", path="/predictdata", content_type="application/json", data=body).get_environ()
    environ["REQUEST_METHOD"] = method  # werkzeug's request upper-cases the method: Flask answers it as a POST
    answer, status, _ = run_wsgi_app(app, environ)
    assert status.startswith("400") and json.loads(b"".join(answer))["error"] == "nesting_too_deep"


def test_deep_nesting_inside_a_string_is_just_text(client, student):
    response = client.post("/predictdata", json={**student, "gender": "[" * 5000})
    assert response.status_code == 422
    assert response.get_json()["details"][0]["field"] == "gender"


def test_a_chunked_body_over_the_limit_answers_413_in_process(app, student):
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    limit = app.config["MAX_CONTENT_LENGTH"]
    builder = EnvironBuilder(
        method="POST",
        path="/predictdata",
        content_type="application/json",
        input_stream=io.BytesIO(b"[" + b" " * (limit + 10) + b"]"),
    )
    environ = builder.get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input_terminated"] = True
    body, status, _ = run_wsgi_app(app, environ)
    assert status.startswith("413")
    assert json.loads(b"".join(body))["error"] == "request_entity_too_large"


def test_a_chunked_body_within_the_limit_is_answered(app, student):
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    builder = EnvironBuilder(
        method="POST",
        path="/predictdata",
        content_type="application/json",
        input_stream=io.BytesIO(json.dumps(student).encode()),
    )
    environ = builder.get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input_terminated"] = True
    body, status, _ = run_wsgi_app(app, environ)
    assert status.startswith("200"), b"".join(body)
    assert 0 <= json.loads(b"".join(body))["math_score"] <= 100


@pytest.mark.parametrize("length", ["\u0661\u0669\u0661", "1e2", "-5", " 12"])
def test_a_content_length_of_anything_but_ascii_digits_is_a_400(app, student, length):
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    builder = EnvironBuilder(
        method="POST",
        path="/predictdata",
        content_type="application/json",
        input_stream=io.BytesIO(json.dumps(student).encode()),
    )
    environ = builder.get_environ()
    environ["CONTENT_LENGTH"] = length  # int() would read Arabic-Indic digits as 191
    body, status, _ = run_wsgi_app(app, environ)
    assert status.startswith("400")
    assert json.loads(b"".join(body))["message"] == "the Content-Length header is not a number"


def test_a_form_of_too_many_fields_is_refused_before_it_is_parsed(client):
    from src.web.body_guard import MAX_FORM_FIELDS

    response = client.post(
        "/predictdata", data=b"a=&" * (MAX_FORM_FIELDS + 1), content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 413 and response.get_json()["error"] == "too_many_fields"


def test_large_bodies_take_turns_while_small_ones_pass():
    import threading

    from werkzeug.test import Client

    from src.web.body_guard import LARGE_BODY, BodyGuard

    entered, release = threading.Event(), threading.Event()

    def app(environ, start_response):
        if int(environ["CONTENT_LENGTH"]) > LARGE_BODY:
            entered.set()
            release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    guard = Client(BodyGuard(app, 1 << 24, heavy_slots=1, timeout=0.5))
    large = b"x" * (LARGE_BODY + 1)
    first: list = []
    worker = threading.Thread(target=lambda: first.append(guard.post("/", data=large)))
    worker.start()
    try:
        assert entered.wait(10)
        assert guard.post("/", data=b"small").status_code == 200  # a small body never waits for a slot
        busy = guard.post("/", data=large)
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "5"
        assert json.loads(busy.data)["error"] == "busy"
    finally:
        release.set()
        worker.join(10)
    assert first[0].status_code == 200
    assert guard.post("/", data=large).status_code == 200  # the slot was given back with the answer


def test_the_scan_agrees_with_the_parser_and_with_python_on_generated_documents():
    import random
    import re

    rng = random.Random(5)

    def document(level: int):
        if level == 0 or rng.random() < 0.2:
            return rng.choice(['[]{}\\"x', 1.5, None, "a\\b", '"]"', "\\\\", ",:,", 12345678901234567890, "0123"])
        if rng.random() < 0.5:
            return [document(level - 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(["k", "[", "\\", '"{', "7:"]) + str(i): document(level - 1) for i in range(rng.randint(0, 3))}

    def parsed(value) -> tuple[int, int]:  # depth, values (keys counted as values too)
        if isinstance(value, list | dict):
            items = list(value.values()) if isinstance(value, dict) else value
            inner = [parsed(v) for v in items]
            return (
                1 + max((d for d, _ in inner), default=0),
                1 + len(value) * isinstance(value, dict) + sum(n for _, n in inner),
            )
        return 0, 1

    for _ in range(500):
        body = json.dumps(value := document(8)).encode()
        shape = scan(body)
        depth, values = parsed(value)
        assert shape.depth == depth and values <= shape.values <= 2 * values + 1
        assert shape.colons == body.count(b":") and shape.backslash == (b"\\" in body)
        assert shape.longest_digits == max(map(len, re.findall(rb"[0-9]+", body)), default=0)
        assert not shape.stopped


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le", "utf-16", "utf-32"])
def test_the_scan_reads_the_text_in_the_encoding_json_reads_it(encoding):
    text = '{"a": ["\u2200", [[1]], "x:y"]}'
    assert scan(text.encode(encoding)) == scan(text.encode("utf-8"))
    assert scan(text.encode(encoding)).depth == 4  # the object, its list, and [[1]]


def test_a_hostile_body_is_scanned_only_up_to_the_limit():
    hostile = b"[" + b"[]," * 5_000_000 + b"[]]"
    shape = scan(hostile, 32, 320_000)
    assert shape.stopped and shape.values == 320_001  # stopped at the first value past the limit
    assert scan(b"[" * 40, 32).depth == 33 and scan(b"[" * 40, 32).stopped
    assert not scan(hostile).stopped and scan(hostile).values == 10_000_003


def test_a_body_trickled_a_byte_at_a_time_ends_at_its_deadline_not_at_each_gap():
    """Each byte comes well within the socket's wait, yet the body as a whole is late: refused at the deadline,
    and the socket's own timeout is given back afterwards."""
    import socket
    import threading

    from src.web.body_guard import BodyTimedOut, Deadline, read_bounded

    server, client = socket.socketpair()
    server.settimeout(None)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.05):
            try:
                client.sendall(b" ")
            except OSError:
                return

    sender = threading.Thread(target=trickle)
    sender.start()
    started = time.monotonic()
    deadline = Deadline(server, 0.5)
    try:
        with pytest.raises(BodyTimedOut):
            read_bounded(server.makefile("rb", buffering=0), 10_000, 5_000, deadline)
        took = time.monotonic() - started
    finally:
        deadline.finish()
        stop.set()
        sender.join(5)
        client.close()
    assert 0.5 <= took < 1.0, took
    assert server.gettimeout() is None
    server.close()


def test_large_bodies_run_beside_the_event_loop_under_gevent():
    """In a gevent-patched process the heavy work runs in a native thread: the loop's other greenlets go on."""
    import subprocess
    import sys

    script = """
from gevent import monkey
monkey.patch_all()
import threading, time
import gevent
from src.web.body_guard import HeavyWork

heavy = HeavyWork(2, 5.0)
ticks = []

def busy():
    end = time.perf_counter() + 0.6
    while time.perf_counter() < end:  # CPU work holding the interpreter, as a large parse does
        sum(range(1000))
    return threading.get_native_id()

def ticker():
    for _ in range(10):
        ticks.append(time.perf_counter())
        gevent.sleep(0.05)

tick = gevent.spawn(ticker)
native = heavy.run(busy)
tick.join()
gaps = [b - a for a, b in zip(ticks, ticks[1:])]
assert native != threading.get_native_id(), "the work ran in the loop's thread"
assert max(gaps) < 0.3, gaps
print("ok", max(gaps))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=PROJECT)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stdout + done.stderr

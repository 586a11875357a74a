"""The single-student lane answers exactly as the Flask view would, and leaves every other request to Flask."""

import hashlib
import json

import pytest

from src.config import AppConfig
from src.synthetic import generate_students
from src.web.single_lane import SingleStudentLane

TOKEN = "lane-test-token"


def _exchange(client, body, content_type="application/json", headers=None):
    answer = client.post("/predictdata", data=body, content_type=content_type, headers=headers or {})
    return answer.status_code, sorted(answer.headers.items()), answer.get_data()


def _both_ways(client, monkeypatch, body, **kwargs):
    """The answer with the lane, and the answer Flask gives with the lane passing everything on."""
    with_lane = _exchange(client, body, **kwargs)
    with monkeypatch.context() as patched:
        patched.setattr(SingleStudentLane, "_answer", lambda self, environ, body: None)
        through_flask = _exchange(client, body, **kwargs)
    return with_lane, through_flask


def _students(n: int) -> list[dict]:
    frame = generate_students(n, seed=7).drop(columns=["math_score"])
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in frame.to_dict("records")]


def test_the_lane_answers_many_students_byte_for_byte_as_the_view(client, monkeypatch):
    students = _students(150)
    students += [
        {**students[0], "reading_score": 0, "writing_score": 0},
        {**students[1], "reading_score": 100, "writing_score": 100},
        {**students[2], "reading_score": 61.5, "writing_score": 48.25},
    ]
    public = dict(students[3])
    public["race/ethnicity"] = public.pop("race_ethnicity")
    public["reading score"] = public.pop("reading_score")
    students.append(public)
    calls = []
    original = SingleStudentLane._answer

    def spied(self, environ, body):
        answer = original(self, environ, body)
        calls.append(answer is not None)
        return answer

    monkeypatch.setattr(SingleStudentLane, "_answer", spied)
    for student in students:
        with_lane, through_flask = _both_ways(client, monkeypatch, json.dumps(student))
        assert with_lane[0] == 200, with_lane
        assert with_lane == through_flask, student
    assert calls == [True] * len(students)  # the lane answered each, not Flask


@pytest.mark.parametrize(
    "body",
    [
        '{"gender": "female"',  # not JSON
        '["a list"]',
        '{"gender": "female", "gender": "male", "race_ethnicity": "group B"}',
        '{"gender": "Female", "race_ethnicity": "group B", "parental_level_of_education": "some college", '
        '"lunch": "standard", "test_preparation_course": "none", "reading_score": 72, "writing_score": 70}',
        '{"instances": [{"gender": "female"}]}',
        '{"reading_score": 1e400}',
        "",
    ],
)
def test_what_the_lane_leaves_to_flask_is_answered_as_before(client, monkeypatch, body):
    with_lane, through_flask = _both_ways(client, monkeypatch, body)
    assert with_lane[0] != 200 or b"predictions" in with_lane[2]
    assert with_lane == through_flask


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json; charset=utf-8", 200),
        ("Application/JSON", 200),
        (" application/json", 200),
        ("application/json\xa0", 415),
        ("application/json\x85", 415),  # not whitespace to HTTP, nor to werkzeug
    ],
)
def test_content_types_are_read_as_flask_reads_them(client, monkeypatch, student, content_type, status):
    with_lane, through_flask = _both_ways(client, monkeypatch, json.dumps(student), content_type=content_type)
    assert with_lane[0] == status and with_lane == through_flask


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        ("Bearer not-the-token", 401),
        (f"Bearer {TOKEN}", 200),
        (f"bearer  {TOKEN} ", 200),
    ],
)
def test_the_api_token_is_checked_as_the_view_checks_it(store_dir, tmp_path, monkeypatch, student, authorization, status):
    from app import create_app

    config = AppConfig(
        artifacts_dir=store_dir, drift_dir=tmp_path / "drift", api_token_sha256=(hashlib.sha256(TOKEN.encode()).digest(),)
    )
    client = create_app(config).test_client()
    headers = {"Authorization": authorization} if authorization else {}
    with_lane, through_flask = _both_ways(client, monkeypatch, json.dumps(student), headers=headers)
    assert with_lane[0] == status and with_lane == through_flask


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("localhost:8000", 200),
        ("127.0.0.1", 200),
        ("[::1]:8000", 200),
        ("school.example", 200),
        ("b\u00fccher.example", 200),  # an IDNA name Flask binds
        ("a..b", 400),
        (".", 400),
        ("x" * 64, 400),
        ("x" * 64 + ".example", 400),
        ("a" * 254 + ":80", 400),
    ],
)
def test_a_host_flask_cannot_bind_its_urls_to_is_left_to_flask(client, monkeypatch, student, host, status):
    with_lane, through_flask = _both_ways(client, monkeypatch, json.dumps(student), headers={"Host": host})
    assert with_lane[0] == status and with_lane == through_flask


def test_a_host_outside_the_trusted_hosts_is_left_to_flask(app, monkeypatch, student):
    app.config["TRUSTED_HOSTS"] = ["school.example"]
    client = app.test_client()
    for host, status in (("school.example", 200), ("elsewhere.example", 400)):
        with_lane, through_flask = _both_ways(client, monkeypatch, json.dumps(student), headers={"Host": host})
        assert with_lane[0] == status and with_lane == through_flask, host


def test_without_a_model_the_request_goes_to_flask_and_answers_503(app, monkeypatch, student):
    app.extensions["student_math"].slot.pipeline = None
    client = app.test_client()
    with_lane, through_flask = _both_ways(client, monkeypatch, json.dumps(student))
    assert with_lane[0] == 503 and with_lane == through_flask


def test_a_batch_or_a_large_body_is_never_parsed_by_the_lane(client, monkeypatch, student):
    from src.web import single_lane

    parsed = []
    monkeypatch.setattr(single_lane, "parse_json", lambda body: parsed.append(body) or {})
    batch = client.post("/predictdata", json={"instances": [student, student]})
    assert batch.status_code == 200 and len(batch.get_json()["predictions"]) == 2
    padded = client.post("/predictdata", json={**student, "note": "x" * single_lane.MAX_STUDENT_BYTES})
    assert padded.status_code == 422
    assert parsed == []


def test_an_error_inside_the_lane_sends_the_request_to_flask(client, monkeypatch, student):
    expected = _exchange(client, json.dumps(student))

    def broken(self, environ, body):
        raise RuntimeError("a fault inside the lane")

    monkeypatch.setattr(SingleStudentLane, "_answer", broken)
    assert _exchange(client, json.dumps(student)) == expected


class _Counting:
    def __init__(self) -> None:
        self.calls = 0

    def predicted(self, channel, records, scores) -> None:
        self.calls += 1

    def rejected(self, errors) -> None: ...

    def counted(self, channel, n) -> None: ...

    def labeled(self, records, outcomes) -> None: ...


class _FailsOnce(_Counting):
    def predicted(self, channel, records, scores) -> None:
        self.calls += 1
        if self.calls == 1:
            raise OSError("a metrics file could not grow")


def test_an_observer_failing_after_another_counted_is_answered_as_the_app_answers_it_and_counted_once(
    app, monkeypatch, student, caplog
):
    from src.web.errors import request_failed

    services = app.extensions["student_math"]
    reported = []
    request_failed.connect(lambda sender, **extra: reported.append(extra["method"]), app, weak=False)
    client = app.test_client()

    def answer_with(first, failing):
        services.observers[:0] = [first]
        services.observers.append(failing)
        try:
            return _exchange(client, json.dumps(student))
        finally:
            services.observers.remove(first)
            services.observers.remove(failing)

    first, failing = _Counting(), _FailsOnce()
    with_lane = answer_with(first, failing)
    assert with_lane[0] == 500 and json.loads(with_lane[2])["error"] == "internal_error"
    assert first.calls == 1 and failing.calls == 1 and reported == ["POST"]
    with monkeypatch.context() as patched:
        patched.setattr(SingleStudentLane, "_answer", lambda self, environ, body: None)
        first, failing = _Counting(), _FailsOnce()
        assert answer_with(first, failing) == with_lane
    assert first.calls == 1 and failing.calls == 1 and reported == ["POST", "POST"]
    logged = [(r.name, r.getMessage()) for r in caplog.records if r.levelname == "ERROR"]
    assert logged == [("src.web.errors", "unhandled error on POST /predictdata")] * 2  # one logger for alerts to watch

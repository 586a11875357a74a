"""Answers to hostile input and broken stores: never a 500, never a path, never a silently kept value."""

import json
import os
import re
import stat

import pytest

from src.config import AppConfig
from src.store import StoreError, check_version
from src.web.model_slot import ModelSlot

HUGE = "1" + "0" * 309  # an integer too large for a float


@pytest.mark.parametrize("field", ["reading_score", "writing_score"])
def test_an_integer_too_large_for_a_float_is_a_422_naming_the_field(client, student, field):
    body = json.dumps({**student, field: 0}).replace(f'"{field}": 0', f'"{field}": {HUGE}')
    single = client.post("/predictdata", data=body, content_type="application/json")
    assert single.status_code == 422 and single.get_json()["details"][0]["field"] == field
    batch = client.post(
        "/predictdata", data=f'{{"instances": [{json.dumps(student)}, {body}]}}', content_type="application/json"
    )
    assert batch.status_code == 422
    assert batch.get_json()["details"] == [{"index": 1, "field": field, "message": "must be a number between 0 and 100"}]


def test_a_key_given_twice_in_a_json_student_is_refused_not_overwritten(client, student):
    body = json.dumps(student)[:-1] + ', "gender": "male"}'
    single = client.post("/predictdata", data=body, content_type="application/json")
    assert single.status_code == 422
    assert single.get_json()["details"] == [{"field": "gender", "message": "is given more than once"}]
    batch = client.post(
        "/predictdata", data=f'{{"instances": [{json.dumps(student)}, {body}]}}', content_type="application/json"
    )
    assert batch.status_code == 422
    assert batch.get_json()["details"] == [{"index": 1, "field": "gender", "message": "is given more than once"}]
    twice = client.post(
        "/predictdata", data=f'{{"instances": [{body}], "instances": [{body}]}}', content_type="application/json"
    )
    assert (
        twice.status_code == 422
        and {"field": "instances", "message": "is given more than once"} in twice.get_json()["details"]
    )


@pytest.mark.parametrize(
    "version", ["20261123T101500Z-1a2b3c4d\n", "20261123T101500Z-1a2b3c4d\n/..", " 20261123T101500Z-1a2b3c4d"]
)
def test_a_version_with_anything_around_it_is_refused(version):
    assert check_version("20261123T101500Z-1a2b3c4d") == "20261123T101500Z-1a2b3c4d"
    with pytest.raises(StoreError, match="is not a model version"):
        check_version(version)


def test_a_key_id_with_a_trailing_newline_is_refused():
    from src.signing import SigningKeyError, parse_key

    with pytest.raises(SigningKeyError):
        parse_key("key-a\n:" + "s" * 32, "MODEL_SIGNING_KEY")


def test_a_restored_store_clears_the_error_it_caused(trained):
    broken = {"now": False}

    def probe() -> str:
        if broken["now"]:
            raise OSError("Permission denied: '/srv/store/champion.json'")
        return trained.version

    slot = ModelSlot(lambda: pytest.fail("the served model is current: nothing to load"), "/srv/store", probe=probe)
    slot.pipeline = type("Served", (), {"model_version": trained.version})()  # type: ignore[assignment]
    broken["now"] = True
    assert slot.refresh() is None and slot.last_error is not None
    broken["now"] = False
    assert slot.refresh() is None and slot.last_error is None


@pytest.mark.parametrize("breakage", ["unreadable", "a folder", "garbage", "tampered"])
def test_no_answer_names_a_path_or_system_error_text(store_copy, trained, tmp_path, student, breakage):
    from io import BytesIO

    from app import create_app

    pointer = store_copy / "champion.json"
    if breakage == "unreadable":
        os.chmod(pointer, 0)
        if os.access(pointer, os.R_OK):  # root reads any file: make it unreadable for everyone, a link to itself
            pointer.unlink()
            pointer.symlink_to(pointer.name)
    elif breakage == "a folder":
        pointer.unlink()
        pointer.mkdir()
    elif breakage == "garbage":
        pointer.write_text("{")
    else:
        (store_copy / trained.version / "model.pkl").write_bytes(b"not a model")
    try:
        client = create_app(AppConfig(artifacts_dir=store_copy, drift_dir=tmp_path)).test_client()
        class_list = "".join(f"{k}," for k in student)[:-1] + "\n" + ",".join(str(v) for v in student.values())
        answers = [
            client.get("/ready"),
            client.post("/predictdata", json=student),
            client.get("/model.json"),
            client.get("/model"),
            client.post("/predictdata", data={k: str(v) for k, v in student.items()}),
            client.post(
                "/predictdata",
                data={"class_list": (BytesIO(class_list.encode()), "class.csv")},
                content_type="multipart/form-data",
            ),
        ]
    finally:
        if not pointer.is_symlink():
            os.chmod(pointer, stat.S_IRWXU)
    assert answers[0].status_code == 503 and answers[0].get_json()["message"]
    for answer in answers:
        text = answer.get_data(as_text=True)
        assert answer.status_code == 503, (answer.status_code, text[:300])
        assert str(store_copy) not in text and not re.search(r"(?<![\w:/.<])/(tmp|home|srv|work|root)/", text), text
        assert "Permission denied" not in text and "Errno" not in text, text


def test_every_answer_carries_the_security_headers(client, student):
    from src.web.headers import SECURITY_HEADERS

    answers = [
        client.get("/"),
        client.get("/predictdata"),
        client.get("/model"),
        client.get("/nowhere"),
        client.post("/predictdata", json=student),
        client.get("/openapi.json"),
    ]
    for answer in answers:
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get(name) == value, (answer.request.path, name)
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy and "unsafe-inline" not in policy


def test_the_body_guards_own_refusals_carry_the_security_headers_and_a_page_keeps_its_own(client, student):
    from src.web.headers import SECURITY_HEADERS

    too_deep = client.post("/predictdata", data="[" * 40 + "]" * 40, content_type="application/json")
    assert too_deep.status_code == 400 and too_deep.get_json()["error"] == "nesting_too_deep"
    for name, value in SECURITY_HEADERS.items():
        assert too_deep.headers.get(name) == value, name
    assert too_deep.headers.getlist("X-Content-Type-Options") == ["nosniff"]  # once, though the guard sets it too

    from src.web.headers import AnswerHeaders

    def own_policy(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("content-security-policy", "sandbox")])
        return [b"ok"]

    sent = []
    AnswerHeaders(own_policy, 0)({}, lambda status, headers, exc_info=None: sent.extend(headers))
    assert ("content-security-policy", "sandbox") in sent
    assert not any(name == "Content-Security-Policy" for name, _ in sent)
    assert ("X-Frame-Options", "DENY") in sent and not any(name == "Strict-Transport-Security" for name, _ in sent)


def test_a_key_given_twice_is_refused_in_a_batch_that_carries_real_scores(client, student):
    twice = json.dumps({**student, "math_score": 70})[:-1] + ', "gender": "male"}'
    batch = client.post("/predictdata", data=f'{{"instances": [{twice}]}}', content_type="application/json")
    assert batch.status_code == 422
    assert {"index": 0, "field": "gender", "message": "is given more than once"} in batch.get_json()["details"]


def test_a_405_lists_the_allowed_methods_in_one_order_in_every_process(app):
    from werkzeug.exceptions import MethodNotAllowed

    def refuse():
        raise MethodNotAllowed(valid_methods=["POST", "GET", "HEAD", "GET"])

    app.add_url_rule("/refuse-for-test", "refuse_for_test", refuse)
    client = app.test_client()
    assert client.get("/refuse-for-test").headers["Allow"] == "GET, HEAD, POST"
    real = client.put("/predictdata", headers={"Accept": "application/json"})
    assert real.status_code == 405 and real.headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    assert real.get_json()["error"] == "method_not_allowed"

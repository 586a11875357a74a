"""Every request goes through Flask's view, its hooks and its error handlers: no route is answered in front of it."""

from __future__ import annotations

from flask import Response


def _refusing(app):
    """A maintenance-mode hook, as an operator would add one later."""

    @app.before_request
    def maintenance() -> Response:
        return Response('{"error": "maintenance"}', status=503, mimetype="application/json")

    return app


def test_a_before_request_hook_answering_503_stops_a_single_student_json_request(app, student):
    assert app.extensions["student_math"].slot.pipeline is not None  # a model is loaded: the view would answer 200
    client = _refusing(app).test_client()
    answer = client.post("/predictdata", json=student)
    assert answer.status_code == 503
    assert answer.get_json() == {"error": "maintenance"}


def test_the_same_hook_stops_a_batch_and_a_class_list_too(app, student):
    client = _refusing(app).test_client()
    assert client.post("/predictdata", json={"instances": [student]}).status_code == 503
    csv = ",".join(student) + "\n" + ",".join(str(v) for v in student.values()) + "\n"
    assert client.post("/predictdata", data=csv, content_type="text/csv").status_code == 503


def test_after_request_hooks_see_every_single_student_answer(app, student):
    seen = []

    @app.after_request
    def remember(response: Response) -> Response:
        seen.append(response.status_code)
        return response

    client = app.test_client()
    for _ in range(3):
        assert client.post("/predictdata", json=student).status_code == 200
    assert seen == [200, 200, 200]


def test_an_error_in_the_view_of_a_single_student_reaches_the_apps_error_handler(app, student, monkeypatch):
    from src.web import services as services_module

    def broken(*args, **kwargs):
        raise RuntimeError("observer down")

    monkeypatch.setattr(services_module.Services, "predicted", broken)
    answer = app.test_client().post("/predictdata", json=student)
    assert answer.status_code == 500
    assert answer.get_json()["error"] == "internal_error"

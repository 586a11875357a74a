"""A client generated from the served /openapi.json (openapi-python-client), used as a school system would."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import httpx
import pytest

from src.schema import FEATURE_NAMES
from tests.servers import BIN

PACKAGE = "student_math_client"


@pytest.fixture(scope="module")
def generated(tmp_path_factory, trained):
    from app import create_app
    from src.config import AppConfig

    folder = tmp_path_factory.mktemp("generated")
    app = create_app(AppConfig(artifacts_dir=trained.store, drift_dir=folder / "drift"))
    document = folder / "openapi.json"
    document.write_text(json.dumps(app.test_client().get("/openapi.json").get_json()))
    result = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(document),
            "--meta",
            "none",
            "--output-path",
            str(folder / PACKAGE),
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(folder))
    try:
        modules = {
            name: importlib.import_module(f"{PACKAGE}.{name}")
            for name in ("api.default.predict", "api.default.model_json", "models", "client")
        }
        yield app, modules
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _client(app, modules):
    transport = httpx.WSGITransport(app=app)
    return modules["client"].Client(base_url="http://testserver", httpx_args={"transport": transport})


def test_one_student_through_the_generated_client_has_a_typed_band_and_factors(generated, student):
    app, modules = generated
    models, predict = modules["models"], modules["api.default.predict"]
    answer = predict.sync(client=_client(app, modules), body=models.Student.from_dict(student))
    assert isinstance(answer, models.SinglePrediction), answer
    assert isinstance(answer.band, models.Band) and answer.band.name in {"needs_support", "uncertain", "on_track"}
    assert answer.band.cut == 50.0 and answer.band.label
    assert isinstance(answer.factors, models.Factors)
    contributions = answer.factors.contributions
    assert isinstance(contributions, models.Contributions)
    total = answer.factors.baseline + sum(getattr(contributions, name) for name in FEATURE_NAMES)
    assert abs(total - answer.factors.unclipped_score) < 1e-6
    assert answer.interval.low <= answer.math_score <= answer.interval.high
    assert not answer.additional_properties, answer.additional_properties  # every field is typed


def test_a_batch_through_the_generated_client(generated, student):
    app, modules = generated
    models, predict = modules["models"], modules["api.default.predict"]
    batch = models.Batch(
        instances=[
            models.Student.from_dict(student),
            models.Student.from_dict({**student, "reading_score": 20, "writing_score": 25}),
        ]
    )
    answer = predict.sync(client=_client(app, modules), body=batch)
    assert isinstance(answer, models.BatchPrediction), answer
    assert len(answer.predictions) == 2
    for item in answer.predictions:
        assert isinstance(item, models.Prediction) and isinstance(item.band, models.Band)
        assert isinstance(item.factors, models.Factors) and not item.additional_properties
    assert answer.predictions[1].math_score < answer.predictions[0].math_score


def test_a_refusal_through_the_generated_client_is_a_typed_422(generated, student):
    app, modules = generated
    models, predict = modules["models"], modules["api.default.predict"]
    response = predict.sync_detailed(
        client=_client(app, modules), body=models.Student.from_dict({**student, "reading_score": 150})
    )
    assert response.status_code == 422
    assert isinstance(response.parsed, models.ValidationFailed)
    assert [(d.field, d.message) for d in response.parsed.details] == [
        ("reading_score", "must be a number between 0 and 100")
    ]


def test_the_model_card_through_the_generated_client(generated, trained):
    app, modules = generated
    card = modules["api.default.model_json"].sync(client=_client(app, modules))
    assert card.model_version == trained.version

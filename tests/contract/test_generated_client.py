"""Clients generated from a live server's /openapi.json, used as a school system's developer would use them.

Two generators: openapi-python-client and openapi-generator (``openapi-generator-cli`` from PyPI, on Java 17;
its python generator calls OpenAPI 3.1 support beta and generates and imports without error). Each generates
a client from gunicorn's /openapi.json, the client is imported, and one student, a batch with real scores, a
class list, a refusal (422) and /model.json are called through it: every answer arrives as a typed model,
with no documented field left in ``additional_properties``.

openapi-python-client reads a body only of the media types it knows: its documented ``content_type_overrides``
setting has it send the class list (``text/csv``, bytes in the document) as a file.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pydantic
import pytest
import requests

from src.schema import FEATURE_NAMES
from tests.servers import BIN, listening_socket, start_gunicorn, stop, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.server]

PYTHON_CLIENT = "student_math_client"
GENERATOR_CLIENT = "student_math_generated"
BANDS = {"needs_support", "uncertain", "on_track"}


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    """gunicorn serving the session's model on 127.0.0.1, stopped by its PID."""
    folder = tmp_path_factory.mktemp("served")
    listener = listening_socket()
    port = listener.getsockname()[1]
    process, log = start_gunicorn(listener, trained.store, folder)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/ready", process, log=log)
        yield base
    finally:
        stop(process)


@pytest.fixture(scope="module")
def document(server, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("document") / "openapi.json"
    path.write_bytes(requests.get(f"{server}/openapi.json", timeout=30).content)
    return path


def _generate(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def _imported(folder: Path, package: str, names: tuple[str, ...]):
    sys.path.insert(0, str(folder))
    try:
        return {name: importlib.import_module(f"{package}{'.' + name if name else ''}") for name in names}
    finally:
        sys.path.remove(str(folder))


def _forget(package: str) -> None:
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def python_client(document, server):
    folder = document.parent / "opc"
    folder.mkdir()
    config = folder / "config.yaml"
    config.write_text(
        "content_type_overrides:\n  text/csv: application/octet-stream\n  image/png: application/octet-stream\n"
    )
    _generate(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(document),
            "--config",
            str(config),
            "--meta",
            "none",
            "--output-path",
            str(folder / PYTHON_CLIENT),
        ],
        folder,
    )
    try:
        modules = _imported(
            folder, PYTHON_CLIENT, ("api.default.predict", "api.default.model_json", "models", "client", "types")
        )
        modules["http"] = modules["client"].Client(base_url=server, timeout=httpx.Timeout(60.0))
        yield modules
    finally:
        _forget(PYTHON_CLIENT)


@pytest.fixture(scope="module")
def generator_client(document, server):
    if shutil.which("java") is None:
        pytest.fail("openapi-generator needs Java 17: apt-get install openjdk-17-jre-headless (.ci/run does)")
    folder = document.parent / "generator"
    _generate(
        [
            str(BIN / "openapi-generator-cli"),
            "generate",
            "-g",
            "python",
            "-i",
            str(document),
            "-o",
            str(folder),
            "--package-name",
            GENERATOR_CLIENT,
        ],
        document.parent,
    )
    try:
        package = _imported(folder, GENERATOR_CLIENT, ("",))[""]
        api = package.DefaultApi(package.ApiClient(package.Configuration(host=server)))
        yield package, api
    finally:
        _forget(GENERATOR_CLIENT)


def class_list(student: dict) -> str:
    """Two rows with ids: the student, and a row with an unknown gender and a writing score out of range."""
    header = ",".join(["student_id", *FEATURE_NAMES])
    good = ",".join(["S1", *(str(student[n]) for n in FEATURE_NAMES)])
    bad = ",".join(["S2", *(str({**student, "gender": "x", "writing_score": 740}[n]) for n in FEATURE_NAMES)])
    return f"{header}\n{good}\n{bad}\n"


def _all_typed(model, additional: str) -> None:
    """No documented field was left untyped: the model's extra properties are empty."""
    assert not getattr(model, additional), getattr(model, additional)


# --- openapi-python-client ----------------------------------------------------------------------------------------


def test_one_student_through_the_python_client_is_typed(python_client, student):
    models, predict = python_client["models"], python_client["api.default.predict"]
    answer = predict.sync(client=python_client["http"], body=models.Student.from_dict(student))
    assert isinstance(answer, models.SinglePrediction), answer
    assert isinstance(answer.band, models.Band) and answer.band.name in BANDS and answer.band.label
    assert isinstance(answer.factors, models.Factors) and isinstance(answer.factors.contributions, models.Contributions)
    total = answer.factors.baseline + sum(getattr(answer.factors.contributions, n) for n in FEATURE_NAMES)
    assert abs(total - answer.factors.unclipped_score) < 1e-6
    assert answer.interval.low <= answer.math_score <= answer.interval.high
    assert isinstance(answer.below_cut_probability, float) and answer.band_without_background in BANDS
    _all_typed(answer, "additional_properties")


def test_a_batch_with_real_scores_through_the_python_client_has_a_typed_evaluation(python_client, student):
    models, predict = python_client["models"], python_client["api.default.predict"]
    batch = models.Batch(
        instances=[
            models.LabeledStudent.from_dict({**student, "math_score": 70}),
            models.LabeledStudent.from_dict({**student, "reading_score": 20, "writing_score": 25}),
        ]
    )
    answer = predict.sync(client=python_client["http"], body=batch)
    assert isinstance(answer, models.BatchPrediction), answer
    first, second = answer.predictions
    assert isinstance(first, models.Prediction) and first.real_math_score == 70.0 and isinstance(first.inside_range, bool)
    assert second.math_score < first.math_score and second.real_math_score is None
    evaluation = answer.evaluation
    assert isinstance(evaluation, models.Evaluation) and evaluation.students == 1
    assert isinstance(evaluation.test_split, models.TestSplitFigures)
    assert set(evaluation.bands.additional_properties) == BANDS
    assert all(isinstance(v, models.OutcomeCounts) for v in evaluation.bands.additional_properties.values())
    for item in (answer, first, second, evaluation, evaluation.test_split):
        _all_typed(item, "additional_properties")


def test_a_class_list_through_the_python_client_keeps_ids_and_bad_rows_typed(python_client, student):
    models, predict, types = python_client["models"], python_client["api.default.predict"], python_client["types"]
    upload = types.File(payload=class_list(student).encode(), file_name="class.csv", mime_type="text/csv")
    answer = predict.sync(client=python_client["http"], body=upload)
    assert isinstance(answer, models.BatchPrediction), answer
    good, bad = answer.predictions
    assert isinstance(good, models.Prediction) and good.student_id == "S1"
    assert isinstance(bad, models.RowError) and bad.student_id == "S2" and bad.row == 3
    assert [(d.field, d.message) for d in bad.details] == [
        ("gender", "must be one of: female, male"),
        ("writing_score", "must be a number between 0 and 100"),
    ]
    for item in (answer, good, bad, *bad.details):
        _all_typed(item, "additional_properties")


def test_a_refusal_through_the_python_client_is_a_typed_422(python_client, student):
    models, predict = python_client["models"], python_client["api.default.predict"]
    response = predict.sync_detailed(
        client=python_client["http"], body=models.Student.from_dict({**student, "reading_score": 150})
    )
    assert response.status_code == 422
    assert isinstance(response.parsed, models.ValidationFailed)
    assert [(d.field, d.message) for d in response.parsed.details] == [
        ("reading_score", "must be a number between 0 and 100")
    ]


def test_the_model_card_through_the_python_client_is_typed(python_client, trained):
    models = python_client["models"]
    card = python_client["api.default.model_json"].sync(client=python_client["http"])
    assert isinstance(card, models.ModelCard) and card.model_version == trained.version
    assert isinstance(card.metrics.test, models.TestMetrics) and 0 < card.metrics.test.mae < 100
    assert isinstance(card.summary, models.Summary) and isinstance(card.drift, models.DriftSummary)
    assert all(isinstance(h, models.HistoryEntry) for h in card.history) and card.history
    for item in (card, card.metrics, card.metrics.test, card.summary, card.data, card.interval, card.card):
        _all_typed(item, "additional_properties")


# --- openapi-generator ----------------------------------------------------------------------------------------------


def test_one_student_through_the_generator_client_is_typed(generator_client, student):
    package, api = generator_client
    answer = api.predict(package.PredictRequest(package.Student.from_dict(student))).actual_instance
    assert isinstance(answer, package.SinglePrediction), answer
    assert isinstance(answer.band, package.Band) and answer.band.name in BANDS
    assert isinstance(answer.factors, package.Factors)
    total = answer.factors.baseline + sum(getattr(answer.factors.contributions, n) for n in FEATURE_NAMES)
    assert abs(total - answer.factors.unclipped_score) < 1e-6
    assert answer.band_without_background in BANDS
    for item in (answer, answer.band, answer.factors, answer.factors.contributions, answer.interval):
        _all_typed(item, "additional_properties")


def test_a_batch_with_real_scores_through_the_generator_client_has_a_typed_evaluation(generator_client, student):
    package, api = generator_client
    batch = package.Batch(
        instances=[
            package.LabeledStudent.from_dict({**student, "math_score": 70}),
            package.LabeledStudent.from_dict({**student, "reading_score": 20, "writing_score": 25}),
        ]
    )
    answer = api.predict(package.PredictRequest(batch)).actual_instance
    assert isinstance(answer, package.BatchPrediction), answer
    first, second = (item.actual_instance for item in answer.predictions)
    assert isinstance(first, package.Prediction) and first.real_math_score == 70.0
    assert second.math_score < first.math_score
    assert isinstance(answer.evaluation, package.Evaluation) and answer.evaluation.students == 1
    assert set(answer.evaluation.bands) == BANDS
    assert all(isinstance(v, package.OutcomeCounts) for v in answer.evaluation.bands.values())
    for item in (answer, first, answer.evaluation, answer.evaluation.test_split):
        _all_typed(item, "additional_properties")


def test_a_class_list_through_the_generator_client_keeps_ids_and_bad_rows_typed(generator_client, student):
    """The CSV body through the generated ApiClient's public calls (the operation's typed method takes JSON)."""
    package, api = generator_client
    client = api.api_client
    request = client.param_serialize(
        method="POST",
        resource_path="/predictdata",
        header_params={"Content-Type": "text/csv", "Accept": "application/json"},
        body=class_list(student),
    )
    response = client.call_api(*request)
    response.read()
    answer = client.response_deserialize(response, {"200": "Predict200Response"}).data.actual_instance
    assert isinstance(answer, package.BatchPrediction), answer
    good, bad = (item.actual_instance for item in answer.predictions)
    assert isinstance(good, package.Prediction) and good.student_id == "S1"
    assert isinstance(bad, package.RowError) and bad.student_id == "S2" and bad.row == 3
    assert [d.var_field for d in bad.details] == ["gender", "writing_score"]  # `field`, renamed by the generator
    for item in (answer, good, bad, *bad.details):
        _all_typed(item, "additional_properties")


def test_a_refusal_through_the_generator_client_is_a_typed_422(generator_client, student):
    """The generated models check the document's ranges before sending: a student built without that check
    (pydantic's ``model_construct``, as data forwarded from another system) reaches the server, which refuses it."""
    package, api = generator_client
    with pytest.raises(pydantic.ValidationError):  # the client checks the document's range before sending
        package.Student.from_dict({**student, "reading_score": 150})
    unchecked = package.Student.model_construct(**{**student, "reading_score": 150})
    with pytest.raises(package.ApiException) as refused:
        api.predict(package.PredictRequest(unchecked))
    assert refused.value.status == 422
    assert isinstance(refused.value.data, package.ValidationFailed), refused.value.data
    assert [(d.var_field, d.message) for d in refused.value.data.details] == [
        ("reading_score", "must be a number between 0 and 100")
    ]


def test_the_model_card_through_the_generator_client_is_typed(generator_client, trained):
    package, api = generator_client
    card = api.model_json()
    assert isinstance(card, package.ModelCard) and card.model_version == trained.version
    assert isinstance(card.metrics.test, package.TestMetrics) and isinstance(card.summary, package.Summary)
    assert all(isinstance(g, package.GroupFigures) for rows in card.groups.values() for g in rows.values())
    for item in (card, card.metrics, card.metrics.test, card.summary, card.data, card.drift, card.card):
        _all_typed(item, "additional_properties")

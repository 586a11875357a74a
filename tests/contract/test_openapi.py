"""The OpenAPI document at /openapi.json: generated from the schema, complete, and true of the live server."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
import requests
from openapi_spec_validator import validate

from src.schema import FEATURES
from src.validation import MAX_DETAILS
from src.web.openapi import BODY_KINDS, ERRORS
from tests.servers import BIN, listening_socket, start_gunicorn, stop, wait_for

HERE = Path(__file__).resolve().parent
MIN_REQUESTS = 4000


def test_the_document_is_valid_openapi_31_and_covers_every_route(client, app):
    document = client.get("/openapi.json").get_json()
    validate(document)
    assert document["openapi"].startswith("3.1")
    routes = {
        (re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert routes == documented


def test_the_student_comes_from_the_schema_and_every_body_kind_and_error_is_listed(client):
    document = client.get("/openapi.json").get_json()
    student = document["components"]["schemas"]["Student"]
    assert list(student["properties"]) == [f.name for f in FEATURES] == student["required"]
    gender = next(f for f in FEATURES if f.name == "gender")
    assert student["properties"]["gender"]["enum"] == list(gender.categories)
    post = document["paths"]["/predictdata"]["post"]
    assert set(post["requestBody"]["content"]) == set(BODY_KINDS)
    assert {str(status) for status in ERRORS} <= set(post["responses"])
    failed = document["components"]["schemas"]["ValidationFailed"]
    assert failed["properties"]["details"]["maxItems"] == MAX_DETAILS
    for name in ("SinglePrediction", "BatchPrediction", "Prediction", "Interval", "Band", "Factors"):  # may grow
        assert document["components"]["schemas"][name]["additionalProperties"] is True


def test_every_field_of_an_answer_is_typed_in_the_document(client, student):
    """Each key the API answers with is a listed property, so a generated client gets it typed."""
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    single = client.post("/predictdata", json=student).get_json()
    batch = client.post("/predictdata", json={"instances": [student]}).get_json()
    assert set(single) <= set(schemas["SinglePrediction"]["properties"]), set(single)
    assert set(batch) <= set(schemas["BatchPrediction"]["properties"]), set(batch)
    assert set(batch["predictions"][0]) <= set(schemas["Prediction"]["properties"])
    assert set(single["band"]) <= set(schemas["Band"]["properties"])
    assert set(single["factors"]) <= set(schemas["Factors"]["properties"])
    assert set(single["factors"]["contributions"]) == set(schemas["Contributions"]["properties"])
    assert set(single["interval"]) <= set(schemas["Interval"]["properties"])
    labeled = client.post("/predictdata", json={"instances": [{**student, "math_score": 70}]}).get_json()
    assert set(labeled) <= set(schemas["BatchPrediction"]["properties"]), set(labeled)
    assert set(labeled["predictions"][0]) <= set(schemas["Prediction"]["properties"]), set(labeled["predictions"][0])
    error = client.post("/predictdata", json={**student, "gender": "x"}).get_json()
    assert set(error) <= set(schemas["ValidationFailed"]["properties"])
    assert set(client.post("/predictdata", data="{", content_type="application/json").get_json()) <= set(
        schemas["Error"]["properties"]
    )


@pytest.mark.timeout(2400)
def test_schemathesis_finds_no_server_error_and_no_nonconforming_answer_on_gunicorn(trained, tmp_path):
    listener = listening_socket()
    port = listener.getsockname()[1]
    process, log = start_gunicorn(listener, trained.store, tmp_path, workers=2)
    try:
        wait_for(f"http://127.0.0.1:{port}/ready", process, log=log)
        result = subprocess.run(
            [
                str(BIN / "st"),
                "--config-file",
                str(HERE / "schemathesis.toml"),
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                "1500",  # per operation: about 5,000 cases over the document's operations
                "--generation-deterministic",
                "--no-color",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=2300,
            check=False,
        )  # its cache stays in tmp_path
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        stop(process)
    summary = result.stdout[result.stdout.rfind("SUMMARY") :]
    (tmp_path / "schemathesis.txt").write_text(result.stdout)
    print(summary)  # shown with pytest -s
    assert result.returncode == 0, result.stdout[-6000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert generated and int(generated.group(1)) >= MIN_REQUESTS, summary
    assert int(generated.group(2)) == int(generated.group(1)) and "No issues found" in summary, summary
    served = sum(
        float(v) for v in re.findall(r'^flask_http_request_total\{[^}]*status="5\d\d"[^}]*\} (\S+)$', metrics, re.MULTILINE)
    )
    assert served == 0, "the server answered 5xx"
    assert "Traceback" not in log.read_text()


API_TOKEN = "school-system-token-for-the-contract-run"
MIN_TOKEN_REQUESTS = 300


@pytest.mark.timeout(600)
def test_schemathesis_with_an_api_token_gets_answers_not_401_on_gunicorn(trained, tmp_path):
    """The API behind API_TOKEN_SHA256: a client that sends its token gets the documented answers."""
    listener = listening_socket()
    port = listener.getsockname()[1]
    token = {"API_TOKEN_SHA256": hashlib.sha256(API_TOKEN.encode()).hexdigest()}
    process, log = start_gunicorn(listener, trained.store, tmp_path, workers=2, env=token)
    try:
        wait_for(f"http://127.0.0.1:{port}/ready", process, log=log)
        result = subprocess.run(
            [
                str(BIN / "st"),
                "--config-file",
                str(HERE / "schemathesis.toml"),
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "--include-operation-id",
                "predict",
                "-H",
                f"Authorization: Bearer {API_TOKEN}",
                "--checks",
                "all",
                "--max-examples",
                "400",
                "--generation-deterministic",
                "--no-color",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        stop(process)
    summary = result.stdout[result.stdout.rfind("SUMMARY") :]
    assert result.returncode == 0, result.stdout[-6000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert generated and int(generated.group(1)) >= MIN_TOKEN_REQUESTS, summary
    assert int(generated.group(2)) == int(generated.group(1)) and "No issues found" in summary, summary
    by_status = {
        status: sum(
            float(v)
            for v in re.findall(
                rf'^flask_http_request_total\{{method="POST",status="{status}"\}} (\S+)$', metrics, re.MULTILINE
            )
        )
        for status in ("200", "401", "422")
    }
    print(summary, by_status)  # shown with pytest -s
    assert by_status["200"] > 0 and by_status["422"] > 0, by_status  # the token opened the API
    assert by_status["401"] == 0, by_status  # and every request carried it
    assert "Traceback" not in log.read_text()

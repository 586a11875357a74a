"""API tokens on the JSON and CSV API, the form left open, and HSTS on answers served over HTTPS."""

from __future__ import annotations

import hashlib
import io

import pytest

from src.config import AppConfig
from src.schema import FEATURES
from src.web.security import token_matches

TOKENS = ("school-system-token-one-0123456789", "school-system-token-two-9876543210")
DIGESTS = tuple(hashlib.sha256(t.encode()).digest() for t in TOKENS)


@pytest.fixture()
def guarded(store_dir, tmp_path):
    from app import create_app

    return create_app(
        AppConfig(artifacts_dir=store_dir, drift_dir=tmp_path / "drift", api_token_sha256=DIGESTS)
    ).test_client()


def class_list(student: dict) -> bytes:
    header = ",".join(f.name for f in FEATURES)
    return f"{header}\n{','.join(str(student[f.name]) for f in FEATURES)}\n".encode()


def test_token_matches_only_the_configured_digests():
    assert token_matches(TOKENS[0].encode(), DIGESTS) and token_matches(TOKENS[1].encode(), DIGESTS)
    assert not token_matches(b"another-token", DIGESTS)
    assert not token_matches(DIGESTS[0], DIGESTS)  # the digest itself is not a token
    assert not token_matches(TOKENS[0].encode(), ())


@pytest.mark.parametrize(
    "headers, message",
    [
        ({}, "this API needs a token"),
        ({"Authorization": "Bearer wrong-token-0123456789"}, "not one this server accepts"),
        ({"Authorization": f"Basic {TOKENS[0]}"}, "this API needs a token"),
        ({"Authorization": "Bearer "}, "this API needs a token"),
    ],
)
def test_the_json_api_without_a_valid_token_is_401_in_the_error_shape(guarded, student, headers, message):
    response = guarded.post("/predictdata", json=student, headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {"error": "unauthorized", "message": response.get_json()["message"]}
    assert message in response.get_json()["message"]
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_either_of_two_tokens_opens_the_json_and_csv_api(guarded, student):
    for token in TOKENS:
        auth = {"Authorization": f"Bearer {token}"}
        assert guarded.post("/predictdata", json=student, headers=auth).status_code == 200
        assert guarded.post("/predictdata", json={"instances": [student]}, headers=auth).status_code == 200
        csv = guarded.post("/predictdata", data=class_list(student), content_type="text/csv", headers=auth)
        assert csv.status_code == 200 and csv.get_json()["predictions"][0]["math_score"] >= 0


def test_the_csv_api_without_a_token_is_401_before_the_file_is_read(guarded, student):
    response = guarded.post("/predictdata", data=b"not a class list", content_type="text/csv")
    assert response.status_code == 401 and response.get_json()["error"] == "unauthorized"


def test_the_teachers_form_and_pages_need_no_token_when_only_the_api_is_protected(guarded, student):
    form = {k: str(v) for k, v in student.items()}
    posted = guarded.post("/predictdata", data=form)
    assert posted.status_code == 303
    assert guarded.get(posted.headers["Location"]).status_code == 200
    assert guarded.get("/predictdata").status_code == 200
    upload = guarded.post(
        "/predictdata",
        data={"class_list": (io.BytesIO(class_list(student)), "class.csv")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 200 and b"data:text/csv" in upload.data  # the page of results, with its download
    for path in ("/", "/model", "/model.json", "/ready", "/health", "/openapi.json"):
        assert guarded.get(path).status_code == 200, path


def test_without_api_token_digests_the_api_is_open(client, student):
    assert client.post("/predictdata", json=student).status_code == 200


def test_hsts_is_sent_only_on_answers_served_over_https(client):
    assert "Strict-Transport-Security" not in client.get("/health").headers
    plain = client.get("/health", headers={"X-Forwarded-Proto": "http"})
    assert "Strict-Transport-Security" not in plain.headers
    behind_the_balancer = client.get("/health", headers={"X-Forwarded-Proto": "https"})
    assert behind_the_balancer.headers["Strict-Transport-Security"] == "max-age=31536000"
    direct = client.get("/predictdata", base_url="https://localhost")
    assert direct.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_hsts_max_age_zero_sends_none(store_dir, tmp_path):
    from app import create_app

    client = create_app(AppConfig(artifacts_dir=store_dir, drift_dir=tmp_path, hsts_max_age=0)).test_client()
    assert "Strict-Transport-Security" not in client.get("/health", headers={"X-Forwarded-Proto": "https"}).headers


def test_the_openapi_document_declares_the_api_token_on_predict_only(client):
    document = client.get("/openapi.json").get_json()
    scheme = document["components"]["securitySchemes"]["apiToken"]
    assert scheme == {"type": "http", "scheme": "bearer", "description": scheme["description"]}
    post = document["paths"]["/predictdata"]["post"]
    assert post["security"] == [{}, {"apiToken": []}]
    unauthorized = post["responses"]["401"]["content"]["application/json"]["schema"]
    assert unauthorized["allOf"] == [{"$ref": "#/components/schemas/Error"}]
    assert unauthorized["description"] == "`error` is one of `unauthorized`"
    assert "security" not in document["paths"]["/predictdata"]["get"]


def test_a_doubled_slash_is_not_redirected_to_the_clients_host(client):
    response = client.get("/static//style.css", headers={"Host": "attacker.example"})
    assert response.status_code == 404 and "Location" not in response.headers


def test_with_trusted_hosts_another_host_header_is_refused(store_dir, tmp_path):
    from app import create_app
    from src.config import AppConfig

    config = AppConfig(artifacts_dir=store_dir, drift_dir=tmp_path / "drift", trusted_hosts=("school.example",))
    client = create_app(config).test_client()
    assert client.get("/health", headers={"Host": "school.example"}).status_code == 200
    refused = client.get("/static//style.css", headers={"Host": "attacker.example"})
    assert refused.status_code == 400 and "attacker.example" not in refused.headers.get("Location", "")


def test_trusted_hosts_are_read_from_the_environment_and_checked():
    import pytest

    from src.config import AppConfig, ConfigError

    hosts = AppConfig.from_env({"TRUSTED_HOSTS": "school.example, .district.example:8000,[::1]"}).trusted_hosts
    assert hosts == ("school.example", ".district.example:8000", "[::1]")
    with pytest.raises(ConfigError, match=r"TRUSTED_HOSTS must list host names.*entry 2 \('a/b'\)"):
        AppConfig.from_env({"TRUSTED_HOSTS": "ok.example,a/b"})

"""Publishing artifact sets to S3 (a moto server) and serving from MODEL_URI, verified."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from src.config import AppConfig
from src.pipeline.publish import POINTER, main, publish
from src.pipeline.train_pipeline import TrainingConfig, train
from tests.conftest import FAST_MODELS


@dataclass(frozen=True)
class Store:
    client: Any
    name: str

    @property
    def uri(self) -> str:
        return f"s3://{self.name}/student-math"


@pytest.fixture()
def store(s3_env) -> Store:
    """A fresh bucket per test on the shared moto server."""
    name = "models-" + uuid.uuid4().hex[:12]
    s3_env.create_bucket(Bucket=name)
    return Store(s3_env, name)


def test_publish_uploads_the_set_then_the_pointer(store, trained):
    directory = trained.manifest_path.parent
    out = io.StringIO()
    assert main(["--artifacts-dir", str(directory), "--to", store.uri], out=out) == 0, out.getvalue()
    version = trained.manifest["model_version"]
    keys = {o["Key"] for o in store.client.list_objects_v2(Bucket=store.name)["Contents"]}
    assert {f"student-math/{version}/{name}" for name in trained.manifest["files"]} <= keys
    assert f"student-math/{version}/manifest.json" in keys
    pointer = json.loads(store.client.get_object(Bucket=store.name, Key=f"student-math/{POINTER}")["Body"].read())
    assert pointer["model_version"] == version and pointer["prefix"] == f"student-math/{version}/"


def test_publish_refuses_a_tampered_local_set(store, artifacts_copy):
    (artifacts_copy / "preprocessor.pkl").write_bytes(b"x")
    out = io.StringIO()
    assert main(["--artifacts-dir", str(artifacts_copy), "--to", store.uri], out=out) == 1
    assert "preprocessor.pkl does not match its manifest" in out.getvalue()
    assert "Contents" not in store.client.list_objects_v2(Bucket=store.name)


def test_app_serves_from_model_uri_like_from_the_local_folder(store, trained, tmp_path, student):
    from app import create_app

    publish(trained.manifest_path.parent, store.uri)
    remote = create_app(AppConfig(model_uri=store.uri, model_cache_dir=tmp_path / "cache", drift_dir=tmp_path / "d1",
                                  artifacts_dir=tmp_path / "not-used")).test_client()
    local = create_app(AppConfig(artifacts_dir=trained.manifest_path.parent, drift_dir=tmp_path / "d2")).test_client()
    ready = remote.get("/ready")
    assert ready.status_code == 200 and ready.get_json()["source"] == store.uri
    assert ready.get_json()["model_version"] == trained.manifest["model_version"]
    students = [student, {**student, "gender": "male", "lunch": "free/reduced", "reading_score": 41.5}]
    body = {"instances": students}
    assert remote.post("/predictdata", json=body).get_json() == local.post("/predictdata", json=body).get_json()


def test_tampered_object_in_s3_is_refused_and_a_running_app_keeps_its_model(store, trained, tmp_path, student):
    from app import create_app
    from src.web.services import EXTENSION

    publish(trained.manifest_path.parent, store.uri)
    running = create_app(AppConfig(model_uri=store.uri, model_cache_dir=tmp_path / "cache-a", drift_dir=tmp_path / "d"))
    first = trained.manifest["model_version"]
    assert running.test_client().get("/ready").get_json()["model_version"] == first

    second_dir = tmp_path / "second"
    second = train(TrainingConfig(artifacts_dir=second_dir, synthetic_rows=300, cv_folds=3, seed=5,
                                  candidates=FAST_MODELS, tracking=False, n_jobs=1))
    publish(second_dir, store.uri)
    version = second.manifest["model_version"]
    assert version != first
    store.client.put_object(Bucket=store.name, Key=f"student-math/{version}/model.pkl", Body=b"tampered")

    fresh = create_app(AppConfig(model_uri=store.uri, model_cache_dir=tmp_path / "cache-b", drift_dir=tmp_path / "e"))
    ready = fresh.test_client().get("/ready")
    assert ready.status_code == 503
    assert "model.pkl does not match its manifest" in ready.get_json()["message"]

    outcome = running.extensions[EXTENSION].slot.refresh()
    assert outcome is not None and not outcome.ok and f"still serving {first}" in outcome.message
    client = running.test_client()
    ready = client.get("/ready").get_json()
    assert ready["model_version"] == first and "does not match its manifest" in ready["last_error"]
    assert client.post("/predictdata", json=student).get_json()["model_version"] == first


def test_refresh_picks_up_a_newly_published_model(store, trained, tmp_path):
    from app import create_app
    from src.web.services import EXTENSION

    publish(trained.manifest_path.parent, store.uri)
    app = create_app(AppConfig(model_uri=store.uri, model_cache_dir=tmp_path / "cache", drift_dir=tmp_path / "d"))
    slot = app.extensions[EXTENSION].slot
    assert slot.refresh() is None  # same version: nothing to do
    second = train(TrainingConfig(artifacts_dir=tmp_path / "second", synthetic_rows=300, cv_folds=3, seed=9,
                                  candidates=FAST_MODELS, tracking=False, n_jobs=1))
    publish(tmp_path / "second", store.uri)
    assert slot.refresh().ok
    assert app.test_client().get("/ready").get_json()["model_version"] == second.manifest["model_version"]

"""The S3 model store (a moto server): training into it, publishing through the decision, serving from it."""

from __future__ import annotations

import io
import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from src.config import AppConfig
from src.lifecycle.decision import DecisionConfig
from src.lifecycle.training import TrainingConfig, train
from src.pipeline.publish import main
from src.store import POINTER_NAME, S3Store
from tests.conftest import FAST_MODELS


@dataclass(frozen=True)
class Bucket:
    client: Any
    name: str

    @property
    def uri(self) -> str:
        return f"s3://{self.name}/student-math"

    def keys(self) -> set[str]:
        return {o["Key"] for o in self.client.list_objects_v2(Bucket=self.name).get("Contents", [])}

    def pointer(self) -> dict:
        return json.loads(self.client.get_object(Bucket=self.name, Key=f"student-math/{POINTER_NAME}")["Body"].read())


@pytest.fixture()
def bucket(s3_env) -> Bucket:
    """A fresh bucket per test on the shared moto server."""
    name = "models-" + uuid.uuid4().hex[:12]
    s3_env.create_bucket(Bucket=name)
    return Bucket(s3_env, name)


def train_into(store: str, tmp_path, seed: int, **decision) -> Any:
    return train(
        TrainingConfig(
            store=store,
            synthetic_rows=300,
            cv_folds=3,
            seed=seed,
            candidates=FAST_MODELS,
            tracking=False,
            n_jobs=1,
            runs_dir=tmp_path / f"runs-{seed}",
            cache_dir=tmp_path / "train-cache",
            decision=DecisionConfig(**decision),
        )
    )


def test_publish_copies_a_local_version_and_promotes_it_through_the_decision(bucket, trained):
    out = io.StringIO()
    assert main(["--artifacts-dir", trained.store, "--to", bucket.uri], out=out) == 0, out.getvalue()
    assert out.getvalue().startswith(f"promoted {trained.version}: first model in the store")
    keys = bucket.keys()
    assert {f"student-math/{trained.version}/{name}" for name in trained.manifest["files"]} <= keys
    assert bucket.pointer()["model_version"] == trained.version
    assert not [k for k in keys if k.endswith(".csv") and not k.endswith("/check.csv")], "no student records"
    decisions = S3Store(bucket.uri).decisions()
    assert [d["decision"] for d in decisions] == ["promoted"]


def test_publish_refuses_a_tampered_local_set_and_uploads_nothing(bucket, store_copy, trained):
    (store_copy / trained.version / "preprocessor.pkl").write_bytes(b"x")
    out = io.StringIO()
    assert (
        main(["--artifacts-dir", str(store_copy), "--to", bucket.uri, "--runs-dir", str(trained.run_dir.parent)], out=out)
        == 1
    )
    assert "preprocessor.pkl does not match its manifest" in out.getvalue()
    assert not bucket.keys()


def test_a_worse_local_model_is_copied_but_kept_out_of_service(bucket, trained, tmp_path):
    assert main(["--artifacts-dir", trained.store, "--to", bucket.uri], out=io.StringIO()) == 0
    worse = train(
        TrainingConfig(
            store=tmp_path / "local",
            synthetic_rows=300,
            cv_folds=3,
            seed=3,
            candidates=("knn",),
            tracking=False,
            n_jobs=1,
            shuffle_labels=True,
            decision=DecisionConfig(min_test_r2=-100),
        )
    )
    out = io.StringIO()
    assert main(["--artifacts-dir", str(tmp_path / "local"), "--to", bucket.uri, "--min-r2", "-100"], out=out) == 0
    assert out.getvalue().startswith(f"kept {trained.version}: test R2 ") and "does not replace it" in out.getvalue()
    assert bucket.pointer()["model_version"] == trained.version
    assert f"student-math/{worse.version}/manifest.json" in bucket.keys()


def test_app_serves_from_the_s3_store_like_from_the_local_one(bucket, trained, store_dir, tmp_path, student):
    from app import create_app

    assert main(["--artifacts-dir", trained.store, "--to", bucket.uri], out=io.StringIO()) == 0
    remote = create_app(
        AppConfig(
            model_uri=bucket.uri,
            model_cache_dir=tmp_path / "cache",
            drift_dir=tmp_path / "d1",
            artifacts_dir=tmp_path / "not-used",
        )
    ).test_client()
    local = create_app(AppConfig(artifacts_dir=store_dir, drift_dir=tmp_path / "d2")).test_client()
    ready = remote.get("/ready")
    assert ready.status_code == 200 and ready.get_json()["source"] == bucket.uri
    assert ready.get_json()["model_version"] == trained.version and ready.get_json()["loaded_at"]
    students = [student, {**student, "gender": "male", "lunch": "free/reduced", "reading_score": 41.5}]
    body = {"instances": students}
    assert remote.post("/predictdata", json=body).get_json() == local.post("/predictdata", json=body).get_json()


def test_training_straight_into_s3_keeps_records_local(bucket, tmp_path):
    result = train_into(bucket.uri, tmp_path, seed=4)
    assert result.decision.promoted and bucket.pointer()["model_version"] == result.version
    assert (result.run_dir / "test.csv").is_file() and result.run_dir.parent == tmp_path / "runs-4"
    assert not [k for k in bucket.keys() if k.endswith(".csv") and not k.endswith("/check.csv")]


def test_tampered_object_in_s3_is_refused_and_a_running_app_keeps_its_model(bucket, tmp_path, student):
    from app import create_app
    from src.web.services import EXTENSION

    first = train_into(bucket.uri, tmp_path, seed=5).version
    running = create_app(AppConfig(model_uri=bucket.uri, model_cache_dir=tmp_path / "cache-a", drift_dir=tmp_path / "d"))
    assert running.test_client().get("/ready").get_json()["model_version"] == first
    second = train_into(bucket.uri, tmp_path, seed=6, tolerance=1.0)
    assert second.decision.promoted
    bucket.client.put_object(Bucket=bucket.name, Key=f"student-math/{second.version}/model.pkl", Body=b"tampered")

    fresh = create_app(AppConfig(model_uri=bucket.uri, model_cache_dir=tmp_path / "cache-b", drift_dir=tmp_path / "e"))
    ready = fresh.test_client().get("/ready")
    assert ready.status_code == 503
    assert "model.pkl does not match its manifest" in ready.get_json()["message"]

    outcome = running.extensions[EXTENSION].slot.refresh()
    assert outcome is not None and not outcome.ok and f"still serving {first}" in outcome.message
    client = running.test_client()
    ready = client.get("/ready").get_json()
    assert ready["model_version"] == first and "does not match its manifest" in ready["last_error"]
    assert client.post("/predictdata", json=student).get_json()["model_version"] == first


def test_workers_downloading_the_same_version_at_once_all_get_a_verified_set(bucket, tmp_path):
    version = train_into(bucket.uri, tmp_path, seed=7).version
    cache = tmp_path / "shared-cache"
    results: list[Any] = []

    def fetch() -> None:
        store = S3Store(bucket.uri, cache_dir=cache)
        try:
            results.append(store.open_verified(version)[0])
        except Exception as err:  # recorded for the assertion below
            results.append(err)

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [cache / version] * 8
    assert sorted(p.name for p in cache.iterdir()) == [version], "no staging folder is left behind"
    # an already complete cached version is reused after its hashes are checked; a corrupted one is fetched again
    (cache / version / "model.pkl").write_bytes(b"corrupted in the cache")
    directory, _ = S3Store(bucket.uri, cache_dir=cache).open_verified(version)
    assert directory == cache / version and (directory / "model.pkl").read_bytes() != b"corrupted in the cache"


def test_refresh_picks_up_a_newly_promoted_model(bucket, tmp_path):
    from app import create_app
    from src.web.services import EXTENSION

    train_into(bucket.uri, tmp_path, seed=8)
    app = create_app(AppConfig(model_uri=bucket.uri, model_cache_dir=tmp_path / "cache", drift_dir=tmp_path / "d"))
    slot = app.extensions[EXTENSION].slot
    assert slot.refresh() is None  # same version: nothing to do
    second = train_into(bucket.uri, tmp_path, seed=9, tolerance=1.0)
    assert slot.refresh().ok
    assert app.test_client().get("/ready").get_json()["model_version"] == second.version

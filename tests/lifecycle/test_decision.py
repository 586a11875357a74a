"""The model lifecycle on a local store: one decision, rollback, pruning, signed sets, unsafe pointers, retraining."""

from __future__ import annotations

import http.server
import io
import json
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest

from src.config import AppConfig
from src.lifecycle.decision import DecisionConfig, promote_by_hand, rollback
from src.lifecycle.training import TrainingConfig, train
from src.pipeline import promote, retrain
from src.pipeline.train_pipeline import main
from src.signing import parse_key, parse_keys
from src.store import LocalStore, StoreError
from src.synthetic import generate_students
from tests.conftest import FAST_MODELS

FAST = ["--synthetic-rows", "300", "--cv-folds", "3", "--models", ",".join(FAST_MODELS)]
KEY_A = "district-2026:" + "a" * 40
KEY_B = "attacker:" + "b" * 40


def pointer(store: Path) -> dict:
    return json.loads((store / "champion.json").read_text())


def ready(store: Path, tmp_path: Path, **config) -> tuple[int, dict]:
    from app import create_app

    response = create_app(AppConfig(artifacts_dir=store, drift_dir=tmp_path / "drift", **config)).test_client().get("/ready")
    return response.status_code, response.get_json()


def quick(store: Path, seed: int, tmp_path: Path, **overrides) -> object:
    decision = overrides.pop("decision", DecisionConfig())
    return train(
        TrainingConfig(
            store=store,
            synthetic_rows=300,
            cv_folds=3,
            seed=seed,
            candidates=FAST_MODELS,
            tracking=False,
            n_jobs=1,
            runs_dir=tmp_path / "runs",
            decision=decision,
            **overrides,
        )
    )


def test_walk_through_on_stud_csv_a_worse_model_is_kept_out_everywhere(shared_data, tmp_path, monkeypatch):
    """ridge, then knn on the same data: the knn run is kept out of the pointer, the app and the alias."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    stud = str(shared_data / "stud.csv")
    out = io.StringIO()
    assert main(["--data", stud, "--store", "art", "--models", "ridge"], out=out) == 0, out.getvalue()
    ridge = pointer(tmp_path / "art")["model_version"]
    assert out.getvalue().splitlines()[-1].startswith(f"promoted {ridge}")
    out = io.StringIO()
    assert main(["--data", stud, "--store", "art", "--models", "knn"], out=out) == 0, out.getvalue()
    last = out.getvalue().splitlines()[-1]
    assert last.startswith(f"kept {ridge}: test R2 0.7") and "does not replace it" in last, last
    assert pointer(tmp_path / "art")["model_version"] == ridge
    status, body = ready(tmp_path / "art", tmp_path)
    assert status == 200 and body["model_version"] == ridge and body["model"] == "ridge"
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    alias = client.get_model_version_by_alias("student-math-score", "champion")
    assert alias.tags["model_version"] == ridge
    assert client.get_model_version("student-math-score", "2").tags["role"] == "challenger"
    decisions = LocalStore(tmp_path / "art").decisions()
    assert [d["decision"] for d in decisions] == ["promoted", "kept"]


def test_promote_and_rollback_move_the_pointer_and_keep_a_history(store_copy, tmp_path):
    store = LocalStore(store_copy)
    first = pointer(store_copy)["model_version"]
    second = quick(store_copy, 21, tmp_path, decision=DecisionConfig(tolerance=-1.0)).version  # never wins
    assert pointer(store_copy)["model_version"] == first
    out = io.StringIO()
    assert promote.main(["--store", str(store_copy), "--version", second, "--no-tracking"], out=out) == 0
    assert out.getvalue() == f"promoted {second}: promoted by hand\n"
    assert pointer(store_copy)["previous"] == [first]
    assert rollback(store).version == first
    assert pointer(store_copy)["model_version"] == first and pointer(store_copy)["previous"] == []
    with pytest.raises(StoreError, match="no earlier champion"):
        rollback(store)
    out = io.StringIO()
    assert (
        promote.main(["--store", str(store_copy), "--version", "20990101T000000Z-00000000", "--no-tracking"], out=out) == 1
    )
    assert "has no model version 20990101T000000Z-00000000" in out.getvalue()
    assert [d["decision"] for d in store.decisions()][-2:] == ["promoted by hand", "rollback"]


def test_pruning_keeps_the_champion_and_the_previous_one(store_copy, tmp_path):
    store = LocalStore(store_copy)
    champion = pointer(store_copy)["model_version"]
    versions = [
        quick(store_copy, seed, tmp_path, decision=DecisionConfig(tolerance=-1.0, keep_versions=100)).version
        for seed in (31, 32, 33)
    ]
    promote_by_hand(store, versions[0])
    promote_by_hand(store, versions[1])  # champion versions[1], previous versions[0]
    removed = store.prune(keep=2)
    assert set(store.versions()) == {versions[1], versions[0]}
    assert set(removed) == {champion, versions[2]}
    assert rollback(store).version == versions[0]


def test_a_pointer_naming_an_unsafe_version_is_refused_and_nothing_is_deleted(store_copy, tmp_path):
    data = json.loads((store_copy / "champion.json").read_text())
    for bad in ("..", "../etc", "."):
        (store_copy / "champion.json").write_text(json.dumps({**data, "model_version": bad}))
        before = sorted(str(p) for p in store_copy.rglob("*"))
        status, body = ready(store_copy, tmp_path, model_uri=None)
        assert status == 503 and "is not a model version" in body["message"], body
        assert sorted(str(p) for p in store_copy.rglob("*")) == before and store_copy.parent.is_dir()


def test_signed_sets_only_when_the_server_has_keys(tmp_path, student):
    from app import create_app
    from src.web.services import EXTENSION

    store = tmp_path / "store"
    signed = quick(store, 41, tmp_path, signing_key=parse_key(KEY_A, "MODEL_SIGNING_KEY"))
    keys = parse_keys(KEY_A, "MODEL_VERIFY_KEYS")
    status, body = ready(store, tmp_path, verify_keys=keys)
    assert status == 200 and body["model_version"] == signed.version
    running = create_app(AppConfig(artifacts_dir=store, drift_dir=tmp_path / "d2", verify_keys=keys))

    for key, expected in ((KEY_B, "signed with key 'attacker', which this server does not trust"), (None, "not signed")):
        other = quick(
            store,
            42 if key else 43,
            tmp_path,
            signing_key=parse_key(key, "K") if key else None,
            decision=DecisionConfig(tolerance=1.0),
        )
        assert other.decision.promoted
        status, body = ready(store, tmp_path, verify_keys=keys)
        assert status == 503 and expected in body["message"], body
        outcome = running.extensions[EXTENSION].slot.refresh()
        assert not outcome.ok and f"still serving {signed.version}" in outcome.message and expected in outcome.message
        answer = running.test_client().post("/predictdata", json=student)
        assert answer.status_code == 200 and answer.get_json()["model_version"] == signed.version

    # a manifest changed after signing (its hashes rewritten to match a swapped model) is refused too
    promote_by_hand(LocalStore(store), signed.version)
    tampered = tmp_path / "tampered"
    shutil.copytree(store, tampered)
    manifest = json.loads((tampered / signed.version / "manifest.json").read_text())
    manifest["metrics"]["test"]["r2"] = 0.99
    (tampered / signed.version / "manifest.json").write_text(json.dumps(manifest))
    data = pointer(tampered)
    from src.storage import sha256_file

    data["manifest_sha256"] = sha256_file(tampered / signed.version / "manifest.json")
    (tampered / "champion.json").write_text(json.dumps(data))
    status, body = ready(tampered, tmp_path, verify_keys=keys)
    assert status == 503 and "signature of the model set does not match its manifest" in body["message"]


class DriftReport(http.server.BaseHTTPRequestHandler):
    report: dict = {}

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        body = json.dumps(self.report).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        return None


@pytest.fixture()
def drift_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), DriftReport)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_port}/drift"
    finally:
        server.shutdown()
        server.server_close()


def test_retrain_does_nothing_on_unchanged_data_and_trains_on_appended_rows(tmp_path, drift_server):
    server, url = drift_server
    data = tmp_path / "students.csv"
    generate_students(400, seed=5).to_csv(data, index=False)
    store = tmp_path / "store"
    args = ["--store", str(store), "--data", str(data), "--no-tracking", *FAST]
    out = io.StringIO()
    assert retrain.main(args, out=out) == 0
    assert out.getvalue().startswith("retraining: ") and "has no champion yet" in out.getvalue()
    first = pointer(store)["model_version"]
    assert len(LocalStore(store).versions()) == 1

    DriftReport.report = {"available": True, "drift_detected": False, "window_size": 500, "threshold": 0.2}
    out = io.StringIO()
    assert retrain.main([*args, "--drift-url", url], out=out) == 0
    assert out.getvalue().startswith("nothing to do: data unchanged since " + first), out.getvalue()
    assert "no drift in the last 500 students" in out.getvalue()
    assert len(LocalStore(store).versions()) == 1 and pointer(store)["model_version"] == first

    DriftReport.report = {**DriftReport.report, "drift_detected": True, "drifted_features": ["reading_score"]}
    out = io.StringIO()
    assert retrain.main([*args, "--drift-url", url], out=out) == 0
    assert out.getvalue().startswith("retraining: the serving app reports drift (reading_score")
    assert len(LocalStore(store).versions()) == 2

    more = pd.concat([pd.read_csv(data), generate_students(100, seed=6)], ignore_index=True)
    more.to_csv(data, index=False)
    out = io.StringIO()
    assert retrain.main(args, out=out) == 0
    text = out.getvalue()
    assert text.startswith("retraining: new data: 500 valid rows"), text
    assert text.splitlines()[-1].startswith(("promoted ", "kept "))
    assert len(LocalStore(store).versions()) == 3
    out = io.StringIO()
    assert retrain.main(args, out=out) == 0, "the same data is not trained on twice, kept or promoted"
    assert out.getvalue().startswith("nothing to do: data unchanged since ")

    server.shutdown()
    out = io.StringIO()
    assert retrain.main([*args, "--drift-url", url.replace(str(server.server_port), "1")], out=out) == 1
    assert out.getvalue().startswith("retrain failed: cannot read the drift report")


def test_a_worker_without_a_model_at_boot_keeps_retrying_until_one_is_promoted(tmp_path, student):
    from app import create_app
    from src.web.services import EXTENSION

    store = tmp_path / "store"
    app = create_app(AppConfig(artifacts_dir=store, drift_dir=tmp_path / "drift"))
    slot, client = app.extensions[EXTENSION].slot, app.test_client()
    assert client.get("/ready").status_code == 503
    outcome = slot.refresh()
    assert outcome is not None and not outcome.ok and "has no champion yet" in outcome.message
    version = quick(store, 51, tmp_path).version
    assert slot.refresh().ok
    assert client.get("/ready").get_json()["model_version"] == version
    assert client.post("/predictdata", json=student).status_code == 200


def test_the_decision_refuses_a_model_made_worse_for_one_group_naming_it(tmp_path):
    """Training labels of group C shifted by 15 points: overall R2 within a wide tolerance, group C much worse."""
    from src.lifecycle.decision import decide
    from src.lifecycle.training import train_candidate

    clean = generate_students(1000, seed=61)
    shifted = clean.copy()
    shifted.loc[shifted["race_ethnicity"] == "group C", "math_score"] = (
        shifted.loc[shifted["race_ethnicity"] == "group C", "math_score"] + 15
    ).clip(upper=100)
    paths = {name: tmp_path / f"{name}.csv" for name in ("clean", "shifted")}
    clean.to_csv(paths["clean"], index=False)
    shifted.to_csv(paths["shifted"], index=False)
    store = tmp_path / "store"
    champion = train(
        TrainingConfig(
            store=store,
            data=str(paths["clean"]),
            cv_folds=3,
            candidates=("ridge",),
            tracking=False,
            n_jobs=1,
            runs_dir=tmp_path / "runs",
        )
    )
    assert champion.decision.promoted
    candidate = train_candidate(
        TrainingConfig(
            store=store,
            data=str(paths["shifted"]),
            cv_folds=3,
            candidates=("ridge",),
            tracking=False,
            n_jobs=1,
            runs_dir=tmp_path / "runs",
        )
    )
    loose = DecisionConfig(min_test_r2=0.0, tolerance=1.0)
    decision = decide(LocalStore(store), candidate.version, champion.ingestion.test, loose)
    assert decision.action == "kept" and decision.champion == champion.version
    assert "per group: worst group race_ethnicity=group C" in decision.reason, decision.reason
    assert pointer(store)["model_version"] == champion.version
    unchecked = decide(
        LocalStore(store),
        candidate.version,
        champion.ingestion.test,
        DecisionConfig(min_test_r2=0.0, tolerance=1.0, group_tolerance=None),
    )
    assert unchecked.promoted, "without the per-group check the same candidate would have replaced the champion"

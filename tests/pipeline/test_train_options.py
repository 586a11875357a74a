"""Training without some features, options from a parameters file, and the fixed-path reports for DVC."""

import io
import json

import pandas as pd
import pytest

from src.answers.model import PredictPipeline
from src.config import AppConfig
from src.pipeline.train_pipeline import main
from tests.conftest import FAST_MODELS

FAST = ["--synthetic-rows", "300", "--cv-folds", "3", "--no-tracking"]


@pytest.fixture(scope="module")
def without_protected(tmp_path_factory):
    directory = tmp_path_factory.mktemp("excluded")
    out = io.StringIO()
    code = main(
        [
            "--artifacts-dir",
            str(directory),
            *FAST,
            "--models",
            ",".join(FAST_MODELS),
            "--exclude-features",
            "gender,race_ethnicity",
        ],
        out=out,
    )
    assert code == 0, out.getvalue()
    return directory, out.getvalue()


def champion_set(store):
    return store / json.loads((store / "champion.json").read_text())["model_version"]


def test_excluded_features_are_not_seen_and_are_recorded(without_protected, student):
    store, report = without_protected
    directory = champion_set(store)
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["excluded_features"] == ["gender", "race_ethnicity"]
    assert "gender" not in manifest["features_used"] and "reading_score" in manifest["features_used"]
    assert "excluded: gender, race_ethnicity" in report
    pipeline = PredictPipeline.from_artifacts(directory)
    assert pipeline.scorer.kind in {"additive", "vector"} or manifest["model"] == "knn"  # the fast path still serves
    scores = {
        float(pipeline.predict([{**student, "gender": g, "race_ethnicity": r}]).scores[0])
        for g in ("female", "male")
        for r in ("group A", "group C", "group E")
    }
    assert len(scores) == 1  # neither feature moves the prediction
    assert pipeline.predict([student]).raw[0] == pytest.approx(
        pipeline.reference.score_frame(pd.DataFrame([student]))[0], abs=1e-9
    )
    # groups are still measured for the excluded features: that is the point of training without them
    assert set(manifest["groups"]["gender"]) == {"female", "male"}


def test_api_still_validates_excluded_features(without_protected, student, tmp_path):
    from app import create_app

    directory, _ = without_protected
    client = create_app(AppConfig(artifacts_dir=directory, drift_dir=tmp_path)).test_client()
    assert client.post("/predictdata", json=student).status_code == 200
    bad = client.post("/predictdata", json={**student, "gender": "robot"})
    assert bad.status_code == 422 and bad.get_json()["details"][0]["field"] == "gender"
    missing = client.post("/predictdata", json={k: v for k, v in student.items() if k != "race_ethnicity"})
    assert missing.status_code == 422 and missing.get_json()["details"][0]["field"] == "race_ethnicity"


@pytest.mark.parametrize(
    "value, message",
    [
        ("gender,shoe_size", "cannot exclude unknown feature(s) shoe_size"),
        (
            "gender,race_ethnicity,parental_level_of_education,lunch,test_preparation_course,reading_score,writing_score",
            "cannot exclude every feature",
        ),
    ],
)
def test_bad_exclusions_are_refused_naming_the_rule(tmp_path, value, message):
    out = io.StringIO()
    assert main(["--artifacts-dir", str(tmp_path), *FAST, "--exclude-features", value], out=out) == 2
    assert out.getvalue().startswith("training failed: --exclude-features: ") and message in out.getvalue()
    assert not (tmp_path / "champion.json").exists()


def test_params_file_sets_the_options_and_the_command_line_wins(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(
        "train:\n  synthetic_rows: 300\n  cv_folds: 3\n  seed: 7\n  models: [ridge, knn]\n"
        "  exclude_features: [gender]\n  no_tracking: true\n"
    )
    out = io.StringIO()
    assert main(["--params", str(params), "--artifacts-dir", str(tmp_path / "a"), "--seed", "8"], out=out) == 0
    manifest = json.loads((champion_set(tmp_path / "a") / "manifest.json").read_text())
    assert manifest["data"]["seed"] == 8 and manifest["excluded_features"] == ["gender"]
    assert manifest["metrics"]["cv"]["folds"] == 3 and manifest["model"] in {"ridge", "knn"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("train:\n  learning_rate: 3\n", "unknown training option(s) learning_rate"),
        ("seed: 3\n", "has no 'train:' mapping"),
        ("train: [1, 2\n", "cannot read parameters"),
    ],
)
def test_bad_params_files_are_refused(tmp_path, text, message):
    params = tmp_path / "params.yaml"
    params.write_text(text)
    out = io.StringIO()
    assert main(["--params", str(params), "--artifacts-dir", str(tmp_path / "a")], out=out) == 2
    assert message in out.getvalue()


def test_reports_dir_gets_metrics_plots_and_a_loadable_set(tmp_path):
    reports = tmp_path / "reports"
    argv = ["--artifacts-dir", str(tmp_path / "a"), *FAST, "--models", "ridge", "--reports-dir", str(reports)]
    assert main(argv, out=io.StringIO()) == 0
    manifest = json.loads((champion_set(tmp_path / "a") / "manifest.json").read_text())
    assert json.loads((reports / "metrics.json").read_text())["test"] == manifest["metrics"]["test"]
    for name in manifest["plots"]:
        assert (reports / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert PredictPipeline.from_artifacts(reports / "model").model_version == manifest["model_version"]
    assert main(argv, out=io.StringIO()) == 0  # a second run replaces the copy
    assert sorted(p.name for p in reports.iterdir()) == [
        "error_by_group.png",
        "metrics.json",
        "model",
        "predicted_vs_actual.png",
    ]
    (reports / "model" / "manifest.json").unlink()  # no longer a set training wrote: left alone
    out = io.StringIO()
    assert main(argv, out=out) == 1 and "is not a model set written by training" in out.getvalue()

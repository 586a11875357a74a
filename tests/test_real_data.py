"""Quality on the public data set, and the public download's header format, end to end."""

import io
import json
import time

import pandas as pd
import pytest

from src.components.group_metrics import coverage_outside
from src.config import AppConfig
from src.lifecycle.decision import DecisionConfig
from src.lifecycle.training import TrainingConfig, train
from src.pipeline.train_pipeline import main
from src.schema import CATEGORICAL_FEATURES, canonical_name
from src.validation import StudentColumns


@pytest.fixture(scope="module")
def stud_run(shared_data, tmp_path_factory):
    directory = tmp_path_factory.mktemp("stud")
    started = time.perf_counter()
    out = io.StringIO()
    code = main(["--data", str(shared_data / "stud.csv"), "--artifacts-dir", str(directory), "--no-tracking"], out=out)
    return code, time.perf_counter() - started, directory, out.getvalue()


def test_stud_csv_with_defaults_meets_the_quality_bar(stud_run):
    code, seconds, directory, report = stud_run
    assert code == 0, report
    version = pd.read_json(directory / "champion.json", typ="series")["model_version"]
    manifest = pd.read_json(directory / version / "metrics.json", typ="series")
    test = manifest["test"]
    assert test["r2"] >= 0.87, report
    assert 0.85 <= test["interval_coverage"] <= 0.95, report
    assert seconds < 60, f"training took {seconds:.1f} s"


def test_stud_csv_errors_by_group_are_in_metrics_json(stud_run):
    code, _, directory, report = stud_run
    assert code == 0, report
    version = json.loads((directory / "champion.json").read_text())["model_version"]
    metrics = json.loads((directory / version / "metrics.json").read_text())
    groups = metrics["groups"]
    assert set(groups) == {f.name for f in CATEGORICAL_FEATURES}
    for feature in CATEGORICAL_FEATURES:
        assert sum(row["count"] for row in groups[feature.name].values()) == metrics["rows"]["test"]
    assert groups["race_ethnicity"]["group A"]["small"] is True  # 20 test students: flagged, still listed
    # Why the interval is the same for every group (docs/data-team.md): no group of >= 100 test students is covered
    # outside [0.85, 0.95]; were one, the interval would have to be group-conditional.
    assert coverage_outside(groups, 0.85, 0.95, min_rows=100) == []


def test_the_chance_below_the_cut_is_no_worse_than_the_logistic_baseline(stud_run):
    """On students the model never saw: Brier and ECE (10 bins) printed and recorded, ours beside the baseline's."""
    code, _, directory, report = stud_run
    assert code == 0, report
    version = json.loads((directory / "champion.json").read_text())["model_version"]
    below = json.loads((directory / version / "metrics.json").read_text())["below_cut"]
    assert below["cut"] == 50.0 and below["bins"] == 10 and below["test_rows"] == 200
    ours, baseline = below["model"], below["baseline"]
    assert ours["brier"] <= baseline["brier"], below
    assert 0 <= ours["ece"] <= 0.1, below
    assert f"below 50: Brier {ours['brier']:.4f}  ECE {ours['ece']:.4f}" in report
    assert f"logistic baseline: Brier {baseline['brier']:.4f}  ECE {baseline['ece']:.4f}" in report
    manifest = json.loads((directory / version / "manifest.json").read_text())
    assert manifest["metrics"]["below_cut"] == below


def test_public_download_format_trains_and_predicts_unchanged(shared_data, tmp_path):
    from app import create_app

    source = shared_data / "kaggle_format_sample.csv"
    frame = pd.read_csv(source)
    assert "race/ethnicity" in frame.columns and "math score" in frame.columns
    result = train(
        TrainingConfig(
            store=tmp_path / "a",
            data=str(source),
            tracking=False,
            candidates=("linear_regression", "ridge"),
            decision=DecisionConfig(min_test_r2=0.5),
        )
    )
    assert result.ingestion.rows_valid == 100 and result.ingestion.rows_rejected == 0
    client = create_app(AppConfig(artifacts_dir=tmp_path / "a", drift_dir=tmp_path / "d")).test_client()
    students = [{k: v for k, v in row.items() if k != "math score"} for row in frame.head(5).to_dict("records")]
    body = client.post("/predictdata", json={"instances": students})
    assert body.status_code == 200, body.get_json()
    renamed = [{canonical_name(k): v for k, v in s.items()} for s in students]
    assert client.post("/predictdata", json={"instances": renamed}).get_json() == body.get_json()


def test_bands_on_the_public_test_split_are_rarely_wrong_and_factors_add_up(stud_run):
    """The default cut (50) on students the model never saw: flags are right, on-track rarely hides a need."""
    import numpy as np

    from src.answers.bands import Bands
    from src.answers.model import PredictPipeline

    code, _, directory, report = stud_run
    assert code == 0, report
    version = json.loads((directory / "champion.json").read_text())["model_version"]
    pipeline = PredictPipeline.from_artifacts(directory / version)
    test = pd.read_csv(directory / "training-runs" / version / "test.csv")
    actual = test["math_score"].to_numpy()
    out = pipeline.predict(test.to_dict("records"))
    bands = Bands(AppConfig().support_cut).names(np.round(out.low, 1), np.round(out.high, 1))
    flagged, on_track = bands == "needs_support", bands == "on_track"
    assert flagged.sum() >= 5 and (actual[flagged] < 50).mean() >= 0.9
    assert (actual[on_track] < 50).mean() <= 0.03
    if pipeline.factors.available:
        totals = pipeline.factors.baseline + pipeline.factors.columns(StudentColumns.from_frame(test)).sum(axis=1)
        assert np.max(np.abs(totals - pipeline.reference.score_frame(test))) <= 1e-6
    else:
        assert pipeline.scorer.kind != "additive" and pipeline.factors.reason


def test_a_model_trained_on_real_students_shows_no_synthetic_notice(stud_run, tmp_path):
    from app import create_app

    client = create_app(AppConfig(artifacts_dir=stud_run[2], drift_dir=tmp_path)).test_client()
    for path in ("/", "/predictdata"):
        assert 'id="synthetic-notice"' not in client.get(path).get_data(as_text=True)


def test_the_public_download_is_accepted_as_a_class_list(shared_data, stud_run, tmp_path):
    from app import create_app

    client = create_app(AppConfig(artifacts_dir=stud_run[2], drift_dir=tmp_path)).test_client()
    data = (shared_data / "kaggle_format_sample.csv").read_bytes()
    body = client.post("/predictdata", data=data, headers={"Content-Type": "text/csv"}).get_json()
    assert len(body["predictions"]) == 100 and all("band" in p for p in body["predictions"])

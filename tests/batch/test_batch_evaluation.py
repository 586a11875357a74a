"""The batch command on files that carry the real math score: outcome columns and evaluation.json."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from src.answers.evaluation import REAL_SCORE
from src.batch.core import BatchConfig
from src.components.group_metrics import group_metrics
from src.pipeline.batch_predict import main, run
from tests.batch.batch_cases import check_evaluation, read_output, write_labeled


def test_the_public_download_is_scored_with_its_real_scores_kept_under_their_own_name(trained, shared_data, tmp_path):
    source = shared_data / "kaggle_format_sample.csv"
    out = tmp_path / "out"
    assert main(["--input", str(source), "--output", str(out), "--store", trained.store]) == 0
    given = pd.read_csv(source)
    predictions = read_output(out / "predictions", "csv")
    assert len(predictions) == len(given)
    assert predictions[REAL_SCORE].astype(float).tolist() == given["math score"].astype(float).tolist()
    assert read_output(out / "rejects", "csv").empty
    evaluation = check_evaluation(out)
    assert evaluation["overall"]["test_split"]["mae"] == round(trained.manifest["metrics"]["test"]["mae"], 6)
    # per group: training's per-group function on the written predictions
    students = given.rename(
        columns={
            "race/ethnicity": "race_ethnicity",
            "parental level of education": "parental_level_of_education",
            "test preparation course": "test_preparation_course",
        }
    )
    inside = (
        (predictions["interval_low"] <= given["math score"]) & (given["math score"] <= predictions["interval_high"])
    ).to_numpy()
    expected = group_metrics(
        students,
        given["math score"].to_numpy(dtype=float),
        predictions["math_score"].to_numpy(dtype=float),
        0.0,
        covered=inside,
    )
    for feature, rows in expected.items():
        for group, row in rows.items():
            mine = evaluation["groups"][feature][group]
            assert mine["count"] == row["count"] and mine["small"] == row["small"]
            for key in ("mae", "bias", "coverage"):
                assert (mine[key] is None) == (row[key] is None)
                if row[key] is not None:
                    assert mine[key] == pytest.approx(row[key], abs=2e-6)


def test_blank_real_scores_are_predicted_and_broken_ones_rejected_whatever_the_chunks(trained, tmp_path):
    source = tmp_path / "class.csv"
    students = write_labeled(source)
    runs = {}
    for chunk_rows in (150, 100_000):
        out = tmp_path / f"out-{chunk_rows}"
        run(BatchConfig(input=str(source), output=str(out), store=trained.store, chunk_rows=chunk_rows))
        runs[chunk_rows] = check_evaluation(out)
        rejects = read_output(out / "rejects", "csv")
        assert rejects[["row", "field", "value"]].values.tolist() == [[6, "math_score", "7,5"], [18, "math_score", "101"]]
        predictions = read_output(out / "predictions", "csv")
        assert len(predictions) == len(students) - 2
        assert pd.to_numeric(predictions[REAL_SCORE]).isna().sum() == (students["math_score"] == "").sum()
        summary = json.loads((out / "summary.json").read_text())
        assert summary["rejected_rows"] == 2
    small, whole = runs[150], runs[100_000]
    assert small["overall"]["students"] == whole["overall"]["students"]
    assert small["overall"]["bands"] == whole["overall"]["bands"]
    assert small["overall"]["mae"] == pytest.approx(whole["overall"]["mae"], abs=2e-6)
    assert small["groups"]["gender"]["female"]["count"] == whole["groups"]["gender"]["female"]["count"]


def test_a_file_without_real_scores_gets_no_evaluation(trained, tmp_path):
    source = tmp_path / "class.csv"
    write_labeled(source).drop(columns=["math_score"]).to_csv(source, index=False)
    out = tmp_path / "out"
    run(BatchConfig(input=str(source), output=str(out), store=trained.store))
    assert not (out / "evaluation.json").exists()
    assert REAL_SCORE not in read_output(out / "predictions", "csv").columns


def test_chunks_of_one_student_are_evaluated_as_the_whole_file(trained, tmp_path):
    source = tmp_path / "class.csv"
    write_labeled(source, n=30)
    runs = {}
    for chunk_rows in (1, 100_000):  # one labeled student per chunk: its groups' sums all the same
        out = tmp_path / f"out-{chunk_rows}"
        run(BatchConfig(input=str(source), output=str(out), store=trained.store, chunk_rows=chunk_rows))
        runs[chunk_rows] = check_evaluation(out)
    single, whole = runs[1], runs[100_000]
    assert single["overall"]["students"] == whole["overall"]["students"] > 0
    assert single["overall"]["mae"] == pytest.approx(whole["overall"]["mae"], abs=2e-6)
    for feature, groups in whole["groups"].items():
        for group, row in groups.items():
            assert single["groups"][feature][group]["count"] == row["count"], (feature, group)

"""The batch command on Spark (local[2]) and the MLflow answering model through spark_udf.

One SparkSession for the module. Java comes from Debian's openjdk-17-jre-headless (.ci/run installs it).
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from src.answers.columns import answers_frame
from src.batch.core import BatchConfig
from src.pipeline.batch_predict import main, run
from src.schema import FEATURE_NAMES
from tests.batch.batch_cases import (
    check_against_api,
    check_evaluation,
    check_rejects,
    download_prefix,
    json_instances,
    read_output,
    upload_cohort,
    write_labeled,
)
from tests.test_text_rules import LOOSE, run_batch, text_file

pytest.importorskip("pyspark", reason="pyspark is installed from requirements-spark.txt")
if shutil.which("java") is None:
    pytest.skip("Spark needs Java: apt-get install openjdk-17-jre-headless (.ci/run does)", allow_module_level=True)


@pytest.fixture(scope="module")
def aws(s3_server):
    """S3 settings in the environment before Spark starts, so that its Python workers inherit them."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ENDPOINT_URL": s3_server,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            patch.setenv(name, value)
        import boto3

        yield boto3.client("s3")


@pytest.fixture(scope="module")
def spark(aws):
    from src.batch.spark import spark_session

    session = spark_session("local[2]")
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_spark_engine_gives_the_api_answers_and_rejects_every_broken_row(
    spark, trained, cohort, pipeline, api_answers, tmp_path
):
    # Small blocks: each file is split across several tasks, so row numbers must carry across blocks.
    spark.conf.set("spark.sql.files.maxPartitionBytes", "48k")
    try:
        out = tmp_path / "out"
        result = run(
            BatchConfig(
                input=str(cohort.folder),
                output=str(out),
                engine="spark",
                master="local[2]",
                store=trained.store,
                format="parquet",
            )
        )
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    assert (result.predictions, result.rejected_rows, result.rejects) == (5000, 10, 11)
    predictions = read_output(out / "predictions", "parquet")
    assert len(list((out / "predictions").glob("part-*.parquet"))) > 2, "the input was split across tasks"
    check_against_api(predictions, cohort, api_answers, pipeline)
    check_rejects(read_output(out / "rejects", "parquet"), cohort)


def test_s3_prefix_in_and_out_on_spark(spark, aws, trained, cohort, pipeline, api_answers, tmp_path):
    upload_cohort(aws, "state", cohort, "exports/2026")
    result = run(
        BatchConfig(
            input="s3://state/exports/2026/",
            output="s3://state/scored/run1",
            engine="spark",
            master="local[2]",
            store=trained.store,
            format="parquet",
            chunk_rows=1000,
        )
    )
    assert (result.predictions, result.rejected_rows, result.rejects) == (5000, 10, 11)
    local = tmp_path / "from-s3"
    keys = download_prefix(aws, "state", "scored/run1", local)
    assert "scored/run1/summary.json" in keys and any(k.startswith("scored/run1/rejects/part-") for k in keys)
    predictions = read_output(local / "predictions", "parquet")
    assert predictions["source"].str.startswith("s3://state/exports/2026/").all()
    check_against_api(predictions, cohort, api_answers, pipeline)
    check_rejects(read_output(local / "rejects", "parquet"), cohort)


def test_spark_csv_output_equals_the_local_engine(spark, trained, cohort, tmp_path):
    store = trained.store
    source = str(cohort.folder / "b.csv")
    run(BatchConfig(input=source, output=str(tmp_path / "spark"), engine="spark", store=store, support_cut=65.0))
    run(BatchConfig(input=source, output=str(tmp_path / "local"), store=store, support_cut=65.0))
    by = ["source", "row"]
    got, expected = (
        read_output(tmp_path / e / "predictions", "csv").sort_values(by).reset_index(drop=True) for e in ("spark", "local")
    )
    assert list(got.columns) == list(expected.columns)
    assert (
        (got[["student_id", "row", "band", "model_version"]] == expected[["student_id", "row", "band", "model_version"]])
        .all()
        .all()
    )
    assert np.abs(got["math_score"] - expected["math_score"]).max() <= 1e-9


def test_answering_model_through_spark_udf(spark, trained, cohort, pipeline, tmp_path):
    import mlflow
    from pyspark.sql import functions as F

    from src.batch.pyfunc import ERROR, RESULT_TYPE, log_answers_model

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        # this database's own experiment: one made active by an earlier test names an id this database lacks
        mlflow.set_experiment("answers-model-spark")
        info = log_answers_model(trained.manifest_path.parent, support_cut=60.0)
        udf = mlflow.pyfunc.spark_udf(spark, info.model_uri, result_type=RESULT_TYPE, env_manager="local")
    finally:
        mlflow.set_tracking_uri(previous)
    students = cohort.students[list(FEATURE_NAMES)].head(500).astype({"reading_score": float, "writing_score": float})
    broken = students.head(2).assign(gender=["Femal", "female"], reading_score=[50.0, 150.0])
    frame = spark.createDataFrame(pd.concat([students, broken], ignore_index=True).reset_index(names="n"))
    scored = (
        frame.withColumn("answer", udf(F.struct(*FEATURE_NAMES)))
        .select("n", "answer.*")
        .toPandas()
        .sort_values("n")
        .reset_index(drop=True)
    )
    expected = answers_frame(pipeline, json_instances(students), support_cut=60.0)
    good = scored.head(500)
    for column in ("math_score", "interval_low", "interval_high"):
        assert np.abs(good[column].to_numpy() - expected[column].to_numpy()).max() <= 1e-9
    assert good["band"].tolist() == expected["band"].tolist()
    assert np.abs(good["below_cut_probability"].to_numpy() - expected["below_cut_probability"].to_numpy()).max() <= 1e-12
    assert good["band_without_background"].tolist() == expected["band_without_background"].tolist()
    assert (good[ERROR] == "").all() and (good["model_version"] == pipeline.model_version).all()
    assert scored[ERROR].iloc[500] == "gender: must be one of: female, male"
    assert scored[ERROR].iloc[501] == "reading_score: must be a number between 0 and 100"
    assert scored["math_score"].iloc[500:].isna().all() and (scored["band"].iloc[500:] == "").all()
    assert scored["below_cut_probability"].iloc[500:].isna().all()


def _same_evaluation(a: dict, b: dict) -> None:
    """Equal counts and band tables; figures equal to 1e-6 (sums added in another order on each engine)."""

    def walk(x, y):
        if isinstance(x, dict):
            assert set(x) == set(y)
            for key in x:
                walk(x[key], y[key])
        elif isinstance(x, float) and isinstance(y, float):
            assert x == pytest.approx(y, abs=1e-6)
        else:
            assert x == y

    walk(a, b)


def test_spark_and_local_write_the_same_evaluation_of_a_labeled_file(spark, trained, tmp_path):
    source = tmp_path / "class.csv"
    write_labeled(source, n=3000)
    spark.conf.set("spark.sql.files.maxPartitionBytes", "48k")  # several tasks, each with its own parts
    try:
        run(BatchConfig(input=str(source), output=str(tmp_path / "spark"), engine="spark", store=trained.store))
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    run(BatchConfig(input=str(source), output=str(tmp_path / "local"), store=trained.store))
    on_spark, local = (check_evaluation(tmp_path / e) for e in ("spark", "local"))
    _same_evaluation(on_spark, local)
    rejects = read_output(tmp_path / "spark" / "rejects", "csv")
    assert rejects[["row", "field"]].values.tolist() == [[6, "math_score"], [18, "math_score"]]


def test_the_public_download_on_both_engines(spark, trained, shared_data, tmp_path):
    source = str(shared_data / "kaggle_format_sample.csv")
    for engine in ("spark", "local"):
        assert (
            main(
                [
                    "--input",
                    source,
                    "--output",
                    str(tmp_path / engine),
                    "--store",
                    trained.store,
                    "--engine",
                    engine,
                    "--master",
                    "local[2]",
                ]
            )
            == 0
        )
        assert read_output(tmp_path / engine / "rejects", "csv").empty
    _same_evaluation(*(check_evaluation(tmp_path / e) for e in ("spark", "local")))


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize(("changes", "accepted"), [(LOOSE, True), ({"gender": "Femal"}, False)])
def test_spark_gives_the_text_rules_verdict_of_every_other_channel(spark, trained, tmp_path, changes, accepted):
    """ "Female", " group b " and a ``Reading Score`` header: accepted as by the local engine (tests/test_text_rules.py)."""
    result, rejects = run_batch(trained.store, tmp_path, text_file(changes), engine="spark")
    assert (result.predictions, result.rejected_rows) == ((1, 0) if accepted else (0, 1))
    if not accepted:
        assert rejects["reason"].tolist() == ["must be one of: female, male"]

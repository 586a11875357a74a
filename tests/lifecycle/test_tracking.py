"""Training against a real MLflow server (sqlite backend, artifacts on moto S3), registry, promotion, rollback."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
from pathlib import Path

import pytest

from src.lifecycle.tracking import CHAMPION, MODEL_NAME
from src.pipeline import promote
from src.pipeline.train_pipeline import main
from tests.conftest import FAST_MODELS
from tests.servers import BIN, MLFLOW_SERVER_ENV, PROJECT, listening_port, refusing_socket, start, stop, wait_for

FAST = ["--synthetic-rows", "300", "--cv-folds", "3", "--models", ",".join(FAST_MODELS)]


@pytest.fixture()
def mlflow_server(s3_env, tmp_path):
    s3_env.create_bucket(Bucket="mlflow-artifacts")
    log = tmp_path / "mlflow.log"
    process = start(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--artifacts-destination",
            "s3://mlflow-artifacts/runs",
            "--host",
            "127.0.0.1",
            "--port",
            "0",  # the port it was given is read back
            "--workers",
            "1",
        ],
        env=MLFLOW_SERVER_ENV,
        log=log,
        cwd=tmp_path,
    )
    try:
        url = f"http://127.0.0.1:{listening_port(process, log=log, timeout=240)}"
        wait_for(f"{url}/health", process, log=log, timeout=120)
        yield url
    finally:
        stop(process)


def train_cli(tmp_path, uri, *extra) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["--store", str(tmp_path / "artifacts"), "--tracking-uri", uri, *FAST, *extra], out=out)
    return code, out.getvalue()


def pointer_version(tmp_path) -> str:
    return json.loads((tmp_path / "artifacts" / "champion.json").read_text())["model_version"]


def alias_version(client) -> str:
    """The store version the registry's champion alias names."""
    return client.get_model_version_by_alias(MODEL_NAME, CHAMPION).tags["model_version"]


def test_training_run_is_tracked_and_registered_on_a_server(mlflow_server, s3_env, tmp_path):
    import mlflow

    code, report = train_cli(tmp_path, mlflow_server)
    assert code == 0, report
    assert report.splitlines()[-1].startswith(f"promoted {pointer_version(tmp_path)}: first model in the store")
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name(MODEL_NAME)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) >= 3 and all("cv_r2_mean" in c.data.metrics for c in children)
    for metric in (
        "test_r2",
        "test_mae",
        "test_rmse",
        "test_interval_coverage",
        "below_cut_brier",
        "below_cut_ece",
        "baseline_below_cut_brier",
        "baseline_below_cut_ece",
    ):
        assert metric in parent.data.metrics
    assert {"data", "seed", "test_size", "data_fingerprint"} <= parent.data.params.keys()
    assert parent.inputs.dataset_inputs, "the data set is logged as an input"
    plots = [a.path for a in client.list_artifacts(parent.info.run_id, "plots")]
    assert sum(p.endswith(".png") for p in plots) >= 2
    assert "group_mae/lunch/free_reduced" in parent.data.metrics and "group_coverage/gender/male" in parent.data.metrics
    assert "groups.json" in [a.path for a in client.list_artifacts(parent.info.run_id)]
    stored = [a.path for a in client.list_artifacts(parent.info.run_id, "artifacts")]
    assert {"artifacts/model.pkl", "artifacts/preprocessor.pkl", "artifacts/manifest.json"} <= set(stored)
    keys = [o["Key"] for o in s3_env.list_objects_v2(Bucket="mlflow-artifacts")["Contents"]]
    assert any(k.endswith("plots/predicted_vs_actual.png") for k in keys), "artifacts live in S3"
    champion = client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
    assert champion.version == "1" and champion.run_id == parent.info.run_id
    assert champion.tags["model_version"] == pointer_version(tmp_path)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@{CHAMPION}")
    from src.synthetic import generate_students

    scores = {"reading_score": float, "writing_score": float}
    answers = model.predict(generate_students(5, seed=3).drop(columns=["math_score"]).astype(scores))
    assert list(answers.columns)[:4] == ["math_score", "interval_low", "interval_high", "interval_level"]
    assert {"band", "below_cut_probability", "factor_writing_score", "error"} <= set(answers.columns)
    assert answers["band"].isin(["needs_support", "uncertain", "on_track"]).all() and answers["error"].eq("").all()
    assert mlflow.sklearn.load_model(f"runs:/{parent.info.run_id}/sklearn-model").predict(
        generate_students(2, seed=4).drop(columns=["math_score"]).astype(scores)
    ).shape == (2,)
    # its requirements: MLflow's own line, then the versions that trained it, as given (not worked out by loading it)
    requirements = Path(mlflow.artifacts.download_artifacts(f"runs:/{parent.info.run_id}/sklearn-model/requirements.txt"))
    from importlib import metadata

    pinned = [f"{name}=={metadata.version(name)}" for name in ("scikit-learn", "skops", "numpy", "scipy", "pandas")]
    assert requirements.read_text().split()[1:] == pinned


def test_worse_model_is_kept_out_and_alias_and_pointer_agree_at_every_step(mlflow_server, tmp_path):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    assert train_cli(tmp_path, mlflow_server)[0] == 0
    first = pointer_version(tmp_path)
    code, report = train_cli(tmp_path, mlflow_server, "--shuffle-labels", "--min-r2", "-10")
    assert code == 0, report
    assert report.splitlines()[-1].startswith(f"kept {first}: test R2") and "does not replace it" in report
    assert pointer_version(tmp_path) == first == alias_version(client)
    assert client.get_model_version(MODEL_NAME, "2").tags["role"] == "challenger"
    second = client.get_model_version(MODEL_NAME, "2").tags["model_version"]

    store = ["--store", str(tmp_path / "artifacts"), "--tracking-uri", mlflow_server]
    out = io.StringIO()
    assert promote.main([*store, "--version", second], out=out) == 0, out.getvalue()
    assert pointer_version(tmp_path) == second == alias_version(client)
    out = io.StringIO()
    assert promote.main([*store, "--rollback"], out=out) == 0
    assert out.getvalue().startswith(f"promoted {first}: rolled back from {second}")
    assert pointer_version(tmp_path) == first == alias_version(client)
    out = io.StringIO()
    assert promote.main([*store, "--rollback"], out=out) == 1
    assert out.getvalue().startswith("promotion failed:") and "no earlier champion" in out.getvalue()
    assert pointer_version(tmp_path) == first == alias_version(client)


def test_unreachable_tracking_server_stops_training_with_a_clear_message(tmp_path):
    with refusing_socket() as nobody:
        code, report = train_cli(tmp_path, f"http://127.0.0.1:{nobody.getsockname()[1]}")
    assert code == 1
    assert report.startswith("training failed: MLflow tracking server http://127.0.0.1:")
    assert "unreachable" in report and "--no-tracking" in report and report.count("\n") == 1
    assert not (tmp_path / "artifacts" / "champion.json").exists()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


def test_without_tracking_uri_training_logs_offline_to_sqlite_here_without_warnings(tmp_path, monkeypatch):
    import warnings

    import mlflow

    from src.synthetic import generate_students

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    generate_students(300, seed=2).to_csv(tmp_path / "students.csv", index=False)  # a local file as the source
    records = _Records()
    logging.getLogger("mlflow").addHandler(records)
    out = io.StringIO()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(["--data", "students.csv", "--artifacts-dir", "artifacts", *FAST], out=out) == 0, out.getvalue()
    finally:
        logging.getLogger("mlflow").removeHandler(records)
    # What a user sees by default (UserWarning; DeprecationWarnings of MLflow's own dependencies are hidden)
    mlflow_warnings = [str(w.message) for w in caught if "mlflow" in w.filename and w.category is UserWarning]
    assert not mlflow_warnings and not records.messages, (mlflow_warnings, records.messages)
    assert (tmp_path / "mlflow.db").is_file() and (tmp_path / "mlruns").is_dir()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION).version) == "1"
    assert alias_version(client) == pointer_version(tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a busy 2-core machine: mlflow run took over 300 s of wall time there
def test_mlflow_run_trains_through_the_mlproject_entry_point(tmp_path):
    import mlflow

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.MlflowClient(tracking_uri=store).create_experiment(MODEL_NAME, artifact_location=(tmp_path / "mlruns").as_uri())
    result = subprocess.run(
        [
            str(BIN / "mlflow"),
            "run",
            ".",
            "-e",
            "train",
            "--env-manager",
            "local",
            "--experiment-name",
            MODEL_NAME,
            "-P",
            f"store={tmp_path / 'artifacts'}",
            "-P",
            "models=ridge,knn",
            "-P",
            "experiment=false",  # by default a run of the entry point is an experiment, which never promotes
        ],
        cwd=PROJECT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
            "MLFLOW_TRACKING_URI": store,
            "PATH": f"{BIN}:{os.environ['PATH']}",
        },
        capture_output=True,
        text=True,
        timeout=1100,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (tmp_path / "artifacts" / "champion.json").is_file()
    client = mlflow.MlflowClient(tracking_uri=store)
    assert str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION).version) == "1"


ARN = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/student-math-mlflow"


def sagemaker_answering(status: str, active: str):
    """A SageMaker client whose DescribeMlflowTrackingServer answers ``status`` (botocore's Stubber)."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("sagemaker", region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    stubber = Stubber(client)
    stubber.add_response(
        "describe_mlflow_tracking_server",
        {
            "TrackingServerArn": ARN,
            "TrackingServerName": "student-math-mlflow",
            "TrackingServerStatus": status,
            "IsActive": active,
        },
        {"TrackingServerName": "student-math-mlflow"},
    )
    stubber.activate()
    return client, stubber


def test_a_running_managed_tracking_server_passes_the_check():
    from src.lifecycle.tracking import check_reachable

    client, stubber = sagemaker_answering("Started", "Active")
    check_reachable(ARN, sagemaker=client)
    stubber.assert_no_pending_responses()


def test_a_stopped_managed_tracking_server_fails_in_one_line_naming_how_to_start_it():
    from src.lifecycle.tracking import TrackingError, check_reachable

    client, _ = sagemaker_answering("Stopped", "Inactive")
    with pytest.raises(TrackingError) as caught:
        check_reachable(ARN, sagemaker=client)
    assert str(caught.value).startswith("MLflow tracking server student-math-mlflow is Stopped, not running; ")
    assert "aws sagemaker start-mlflow-tracking-server --tracking-server-name student-math-mlflow" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_arn_that_names_no_tracking_server_is_refused_before_any_request():
    from src.lifecycle.tracking import TrackingError, check_reachable

    with pytest.raises(TrackingError, match="is not a SageMaker MLflow tracking server ARN"):
        check_reachable("arn:aws:sagemaker:eu-west-1:123456789012:endpoint/student-math")


def test_an_unreachable_managed_tracking_server_stops_training_in_one_line_and_leaves_the_store_alone(
    tmp_path, monkeypatch, request
):
    nobody = refusing_socket()
    request.addfinalizer(nobody.close)
    for name, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{nobody.getsockname()[1]}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    code, report = train_cli(tmp_path, ARN)
    assert code == 1
    assert report.startswith(f"training failed: MLflow tracking server {ARN} cannot be reached (")
    assert report.count("\n") == 1
    assert not (tmp_path / "artifacts").exists() or not any((tmp_path / "artifacts").iterdir())


def test_the_pinned_plugin_takes_a_tracking_server_arn_as_the_tracking_and_registry_uri():
    from importlib.metadata import entry_points, version

    assert version("sagemaker-mlflow") in (PROJECT / "requirements-tracking.txt").read_text()
    for group in ("mlflow.tracking_store", "mlflow.model_registry_store", "mlflow.request_auth_provider"):
        assert [e.value.split(":")[0].split(".")[0] for e in entry_points(group=group, name="arn")] == [
            "sagemaker_mlflow"
        ], group

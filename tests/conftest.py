"""Shared fixtures: tiny synthetic data, a model trained once per session, app clients, real data paths."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import NoReturn

import pytest

from src.config import AppConfig
from src.lifecycle.training import TrainingConfig, TrainingResult, train

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHARED_DATA_DIR") or PROJECT.parent / "shared" / "data")  # the real data sets
FAST_MODELS = ("linear_regression", "ridge", "knn")


REQUIRE_ALL = "REQUIRE_ALL"


def unavailable(reason: str) -> NoReturn:
    """Skip a test whose tool or data set is missing, saying why; with REQUIRE_ALL=1 (CI) fail instead."""
    if os.environ.get(REQUIRE_ALL) == "1":
        pytest.fail(f"{REQUIRE_ALL}=1 and {reason}", pytrace=False)
    pytest.skip(reason)


# The tiers. `bash scripts/test.sh` runs the tests that have none of the marks registered in pyproject.toml;
# .ci/run runs them all. A test gets the marks of the longest key that names it: its module's path, or the
# module's path and the test's name (parameters left out). Mark a new test that is slow or needs a tool here.
SLOW, SERVER, BROWSER, SPARK, DOCKER = "slow", "server", "browser", "spark", "docker"
TIERS: dict[str, tuple[str, ...]] = {
    # real servers: gunicorn, Prometheus, MLflow, moto (S3), each started and stopped by the test
    "tests/test_gunicorn.py": (SLOW, SERVER),
    "tests/test_gunicorn.py::test_the_settings_listen_where_host_and_port_say": (),
    "tests/test_prometheus_integration.py": (SLOW, SERVER),
    "tests/test_kill_worker.py": (SLOW, SERVER),
    "tests/monitoring/test_realized.py::test_realized_counters_are_exact_across_two_gunicorn_workers_and_shown_on_model": (
        SLOW,
        SERVER,
    ),
    "tests/contract/test_openapi.py::test_schemathesis_finds_no_server_error_and_no_nonconforming_answer_on_gunicorn": (
        SLOW,
        SERVER,
    ),
    "tests/contract/test_openapi.py::test_schemathesis_with_an_api_token_gets_answers_not_401_on_gunicorn": (SLOW, SERVER),
    "tests/contract/test_generated_client.py": (SLOW,),
    "tests/deploy/test_image.py::test_the_image_command_serves_and_the_smoke_test_passes_against_it": (SLOW, SERVER),
    "tests/deploy/test_image.py::test_the_smoke_test_fails_in_one_line_when_the_service_has_no_model": (SLOW, SERVER),
    "tests/deploy/test_production_tracking.py": (SLOW, SERVER),
    "tests/deploy/test_buildspec.py::test_phase_commands_train_and_publish_in_a_clone": (SLOW, SERVER),
    "tests/lifecycle/test_tracking.py": (SLOW, SERVER),
    "tests/lifecycle/test_lifecycle_e2e.py": (SLOW, SERVER),
    "tests/test_dvc.py": (SLOW, SERVER),
    "tests/components/test_data_ingestion_s3.py": (SERVER,),
    "tests/pipeline/test_publish.py": (SERVER,),
    "tests/batch/test_batch_predict.py::test_s3_prefix_in_and_out": (SERVER,),
    "tests/test_storage.py::test_an_s3_place_lists_opens_holds_and_puts_as_a_local_one": (SERVER,),
    # Chromium driving pages served by gunicorn
    "tests/web/test_browser.py": (SLOW, SERVER, BROWSER),
    "tests/web/test_model_page_browser.py": (SLOW, SERVER, BROWSER),
    "tests/web/test_accessibility.py": (SLOW, SERVER, BROWSER),
    # a Spark session (Java), with S3 on moto
    "tests/batch/test_spark.py": (SLOW, SERVER, SPARK),
    # a Docker engine of the test's own builds the image and runs it (gunicorn in the container)
    "tests/deploy/test_image.py::test_the_image_builds_runs_and_passes_the_smoke_test_in_a_docker_engine": (
        SLOW,
        SERVER,
        DOCKER,
    ),
    # long: kill -9 at twenty moments, trainings on the real data, a process killed mid-training
    "tests/lifecycle/test_crash_safety.py": (SLOW,),
    "tests/test_real_data.py": (SLOW,),
    "tests/lifecycle/test_workers.py": (SLOW,),
    "tests/test_docs.py::test_every_command_module_in_the_documents_answers_help": (SLOW,),
    "tests/test_docs.py::test_the_readme_answer_is_what_the_first_model_of_scripts_run_sh_answers": (SLOW,),
    "tests/deploy/test_linters.py": (SLOW,),
    "tests/deploy/test_ci.py": (SLOW,),
    # trainings of every candidate model, or of several stores, each test
    "tests/answers/test_model.py": (SLOW,),
    "tests/pipeline/test_train_options.py": (SLOW,),
    "tests/batch/test_batch_evaluation.py::test_chunks_of_one_student_are_evaluated_as_the_whole_file": (SLOW,),
    "tests/answers/test_columns.py::test_answer_columns_of_other_scorers_are_the_row_by_row_answers": (SLOW,),
    "tests/lifecycle/test_decision.py::test_signed_sets_only_when_the_server_has_keys": (SLOW,),
    "tests/web/test_metrics.py::test_unknown_field_names_never_become_series_and_metrics_stay_small": (SLOW,),
    "tests/test_serving_footprint.py::test_the_app_serves_without_importing_training_packages": (SLOW,),
    # docs/data-team.md's commands as written: each training is a whole run (every candidate, MLflow on sqlite)
    "tests/test_data_team_commands.py::test_training_from_the_project_folder_registers_the_champion_that_mlflow_serves": (
        SLOW,
        SERVER,
    ),
    "tests/test_data_team_commands.py::test_the_lifecycle_commands_train_promote_by_hand_roll_back_and_publish": (
        SLOW,
        SERVER,
    ),
    "tests/test_data_team_commands.py::test_the_short_command_trains_from_a_file": (SLOW,),
    "tests/test_data_team_commands.py::test_training_without_protected_attributes": (SLOW,),
    "tests/test_data_team_commands.py::test_training_from_an_s3_object": (SLOW, SERVER),
    "tests/test_data_team_commands.py::test_mlflow_runs_the_mlproject_in_the_activated_environment": (SLOW,),
    "tests/test_data_team_commands.py::test_the_dvc_block_tracks_the_data_reproduces_training_and_runs_an_experiment": (
        SLOW,
    ),
    "tests/test_data_team_commands.py::test_batch_scoring_of_an_s3_prefix_to_parquet": (SERVER,),
    "tests/test_data_team_commands.py::test_batch_scoring_on_spark_of_a_folder": (SLOW, SPARK),
    "tests/test_data_team_commands.py::test_the_cluster_bundle_is_written_and_the_batch_environment_made": (SLOW,),
}


def tier_marks(nodeid: str) -> tuple[str, ...]:
    """The marks ``TIERS`` gives the test ``nodeid`` (``path::name[parameters]``)."""
    path, _, rest = nodeid.partition("::")
    name = rest.split("[")[0]
    return TIERS.get(f"{path}::{name}", TIERS.get(path, ()))


# How the whole suite is spread over pytest-xdist's workers (`scripts/test.sh --all`: `--dist loadscope
# --no-loadscope-reorder`): a module is one unit of work, given whole to one worker, so a costly module-scoped fixture
# (a trained set, servers, a Spark session, generated clients, a built image) is made once; the units go out in the
# order the collection hook sets.
# The longest modules first (measured: CPU and wall seconds per test over the whole suite), then those with slow
# tests, then the rest: the workers take the next module as they finish one, so none is left alone with a long one
# at the end. A key is a module's path.
LONGEST_FIRST: tuple[str, ...] = (
    "tests/test_data_team_commands.py",
    "tests/contract/test_openapi.py",
    "tests/lifecycle/test_tracking.py",
    "tests/deploy/test_production_tracking.py",
    "tests/lifecycle/test_crash_safety.py",
    "tests/lifecycle/test_provenance.py",
    "tests/web/test_browser.py",
    "tests/batch/test_spark.py",
    "tests/test_gunicorn.py",
    "tests/deploy/test_image.py",
    "tests/answers/test_model.py",
    "tests/lifecycle/test_decision.py",
    "tests/test_slow_clients.py",
    "tests/answers/test_columns.py",
    "tests/monitoring/test_fleet.py",
    "tests/web/test_accessibility.py",
    "tests/contract/test_generated_client.py",
    "tests/deploy/test_buildspec.py",
    "tests/web/test_metrics.py",
    "tests/test_dvc.py",
    "tests/batch/test_pyfunc.py",
    "tests/lifecycle/test_lifecycle_e2e.py",
    "tests/test_kill_worker.py",
    "tests/web/test_teachers_browser.py",
)


def expected_rank(module: str, slow: bool) -> tuple[int, int]:
    """Where a module goes in the run: its place in LONGEST_FIRST, else after them (those with slow tests first)."""
    if module in LONGEST_FIRST:
        return 0, LONGEST_FIRST.index(module)
    return (1, 0) if slow else (2, 0)


def pytest_configure(config) -> None:
    # One core per training, in this process and every command it starts: the suite's workers (pytest-xdist)
    # already share the machine's cores, and a training's cross-validation workers (joblib's loky processes, each
    # importing scikit-learn) would only add work. joblib reads LOKY_MAX_CPU_COUNT for n_jobs=-1.
    os.environ.setdefault("LOKY_MAX_CPU_COUNT", "1")
    # The suite's JVMs (Spark's local sessions and spark-submit, openapi-generator) live for seconds: the quick JIT
    # compiler alone and one garbage-collector thread (test_spark.py: 96 -> 73 busy core-seconds, 58 -> 51 s).
    os.environ.setdefault("JAVA_TOOL_OPTIONS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        for mark in tier_marks(item.nodeid):
            item.add_marker(mark)
    slow: dict[str, bool] = {}
    for item in items:
        module = item.nodeid.partition("::")[0]
        slow[module] = slow.get(module, False) or item.get_closest_marker(SLOW) is not None
    # a stable sort of whole modules: pytest's own order (fixtures made as few times as possible) within each
    items.sort(key=lambda item: expected_rank(item.nodeid.partition("::")[0], slow[item.nodeid.partition("::")[0]]))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """With REQUIRE_ALL=1 a skip of any kind fails the run: CI must run every test."""
    skipped = terminalreporter.stats.get("skipped", [])
    if os.environ.get(REQUIRE_ALL) == "1" and skipped:
        terminalreporter.write_line(f"{REQUIRE_ALL}=1: {len(skipped)} test(s) skipped; failing the run", red=True)


def pytest_sessionfinish(session, exitstatus) -> None:
    browsers = sys.modules.get("tests.web.test_browser")
    if browsers is not None:  # the Chromium its pages shared (started only if a browser test ran here)
        browsers.close_shared_chromium()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if os.environ.get(REQUIRE_ALL) == "1" and skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _no_production_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never log to the tracking server of the machine they run on (CodeBuild sets MLFLOW_TRACKING_URI)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder beside the project; tests that need it skip, saying why, when it is absent."""
    if not (SHARED_DATA / "stud.csv").is_file():
        unavailable(f"real data not found at {SHARED_DATA} (stud.csv); it is present in CI")
    return SHARED_DATA


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainingResult:
    """One small training on 400 synthetic students, shared by the whole session (a few seconds)."""
    directory = tmp_path_factory.mktemp("artifacts")
    return train(
        TrainingConfig(store=directory, synthetic_rows=400, cv_folds=3, candidates=FAST_MODELS, tracking=False, n_jobs=1)
    )


@pytest.fixture(scope="session")
def store_dir(trained: TrainingResult) -> Path:
    """The session's model store (a folder): ``<version>/`` and ``champion.json``."""
    return Path(trained.store)


@pytest.fixture()
def artifacts_copy(trained: TrainingResult, tmp_path: Path) -> Path:
    """A private copy of the session's model set (one version's folder), for tests that change or break it."""
    target = tmp_path / "set"
    shutil.copytree(trained.manifest_path.parent, target)
    return target


@pytest.fixture()
def store_copy(store_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the session's whole store, for tests that change or break it."""
    target = tmp_path / "store"
    shutil.copytree(store_dir, target, ignore=shutil.ignore_patterns("training-runs"))
    return target


@pytest.fixture()
def app_config(store_dir: Path, tmp_path: Path) -> AppConfig:
    return AppConfig(artifacts_dir=store_dir, drift_dir=tmp_path / "drift")


@pytest.fixture()
def app(app_config: AppConfig):
    from app import create_app

    return create_app(app_config)


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def student() -> dict:
    return {
        "gender": "female",
        "race_ethnicity": "group B",
        "parental_level_of_education": "bachelor's degree",
        "lunch": "standard",
        "test_preparation_course": "none",
        "reading_score": 72,
        "writing_score": 74,
    }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on 127.0.0.1; yields its endpoint URL. Credentials are dummies moto accepts."""
    from tests.servers import BIN, listening_port, start, stop, wait_for

    log = tmp_path_factory.mktemp("moto") / "moto.log"
    process = start([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", "0"], log=log)  # port 0: read back
    try:
        url = f"http://127.0.0.1:{listening_port(process, log=log)}"
        wait_for(f"{url}/moto-api/", process, log=log, status=None)
        yield url
    finally:
        stop(process)


@pytest.fixture()
def s3_env(s3_server, monkeypatch):
    """Point boto3 (and MLflow's S3 client) at the moto server for this test."""
    for name, value in {
        "AWS_ENDPOINT_URL": s3_server,
        "MLFLOW_S3_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    import boto3

    return boto3.client("s3")

"""The production shape, run here: CodeBuild's own commands against an MLflow tracking server on S3.

``mlflow server`` with a sqlite backend and ``--artifacts-destination s3://<model bucket>/mlflow`` on moto's S3
server stands in for the managed tracking server of infra/pipeline.yml; the model store is
``s3://<model bucket>/models/student-math`` as in production. The build command of buildspec.yml and the
retraining command of the ``<app>-retrain`` project are read from their files and run with the environment the
CodeBuild projects give them (``MLFLOW_TRACKING_URI`` among it). Four steps: the first build, a worse challenger
kept out, a better one promoted, a rollback. At each step the store's pointer, the registry's ``champion``
alias, the run that made the champion and that run's artifacts in the bucket name the same model.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from src.lifecycle.tracking import CHAMPION, MODEL_NAME, champion_history
from src.synthetic import generate_students
from tests.conftest import FAST_MODELS
from tests.deploy.cfn_yaml import load
from tests.servers import BIN, MLFLOW_SERVER_ENV, PROJECT, listening_port, refusing_socket, start, stop, wait_for

BUCKET = "student-math-models"
STORE_PREFIX = "models/student-math"
TRACKING_PREFIX = "mlflow"
# Appended to each command as it is read from its file: fewer candidates and folds, the same code path.
FAST = f"--cv-folds 3 --models {','.join(FAST_MODELS)} --n-jobs 1"
# A challenger that learns nothing (its labels shuffled) and may pass the gate: the champion must keep it out.
WORSE = "--shuffle-labels --min-r2 -10"
# "INFO:     127.0.0.1:53412 - "POST /api/2.0/mlflow/runs/create HTTP/1.1" 200 OK" (uvicorn's access log)
ACCESS_LINE = re.compile(r'"(GET|POST|PATCH|DELETE|PUT) (/api/\d+\.\d+/[^ ?"]+)[^"]*" (\d{3})')
# Three trainings and a rollback, each logging its run, plots and models to the server (the first test pays).
pytestmark = pytest.mark.timeout(1800)


def build_command() -> str:
    spec = yaml.safe_load((PROJECT / "buildspec.yml").read_text())
    [command] = [c for c in spec["phases"]["build"]["commands"] if "src.pipeline.train_pipeline" in c]
    return command


def retrain_command() -> str:
    project = load(PROJECT / "infra" / "pipeline.yml")["Resources"]["RetrainProject"]["Properties"]
    [command] = yaml.safe_load(project["Source"]["BuildSpec"])["phases"]["build"]["commands"]
    return command


@dataclass(frozen=True)
class Step:
    """What production would show after one command: its output, the pointer, the registry, the runs."""

    name: str
    returncode: int
    output: str
    pointer: str  # the model_version champion.json names
    alias: str  # the model_version the registry's champion alias names
    alias_run_id: str
    alias_run_tags: dict[str, str]
    versions: dict[str, dict[str, str]]  # registry version number -> its tags
    runs: dict[str, dict[str, str]]  # model_version -> tags of the training run that made it
    run_artifacts: dict[str, str]  # model_version -> the artifact URI of its run
    history: list[str]


@dataclass(frozen=True)
class Production:
    steps: list[Step]
    keys: list[str]  # every object in the bucket at the end
    work: Path
    command_log: str  # the server's access log while the commands ran (not while this test looked)
    store_manifest: dict[str, bytes]  # model_version -> manifest.json in the model store
    tracked_manifest: dict[str, bytes]  # model_version -> manifest.json among its run's artifacts in the bucket


def _observe(name: str, result: subprocess.CompletedProcess, client, s3) -> Step:
    if result.returncode != 0:
        pytest.fail(f"{name}: exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    pointer = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{STORE_PREFIX}/champion.json")["Body"].read())
    champion = client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
    experiment = client.get_experiment_by_name(MODEL_NAME)
    parents = [
        r
        for r in client.search_runs([experiment.experiment_id])
        if "mlflow.parentRunId" not in r.data.tags and "model_version" in r.data.tags
    ]
    return Step(
        name=name,
        returncode=result.returncode,
        output=result.stdout + result.stderr,
        pointer=pointer["model_version"],
        alias=champion.tags["model_version"],
        alias_run_id=champion.run_id,
        alias_run_tags=dict(client.get_run(champion.run_id).data.tags),
        versions={mv.version: dict(mv.tags) for mv in client.search_model_versions(f"name = '{MODEL_NAME}'")},
        runs={r.data.tags["model_version"]: dict(r.data.tags) for r in parents},
        run_artifacts={r.data.tags["model_version"]: r.info.artifact_uri for r in parents},
        history=champion_history(client),
    )


@pytest.fixture(scope="module")
def production(s3_server, tmp_path_factory) -> Iterator[Production]:
    import boto3
    import mlflow

    root = tmp_path_factory.mktemp("production")
    aws = {
        "AWS_ENDPOINT_URL": s3_server,
        "MLFLOW_S3_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    s3 = boto3.client(
        "s3", endpoint_url=s3_server, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    s3.create_bucket(Bucket=BUCKET)

    server_dir = root / "server"
    server_dir.mkdir()
    log = server_dir / "mlflow.log"
    server = start(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{server_dir / 'mlflow.db'}",
            "--artifacts-destination",
            f"s3://{BUCKET}/{TRACKING_PREFIX}",
            "--host",
            "127.0.0.1",
            "--port",
            "0",  # the port it was given is read back
            "--workers",
            "1",
        ],
        env={**aws, **MLFLOW_SERVER_ENV, "PYTHONUNBUFFERED": "1"},
        log=log,
        cwd=server_dir,
    )
    never_asked = refusing_socket()
    try:
        uri = f"http://127.0.0.1:{listening_port(server, log=log, timeout=240)}"
    except (RuntimeError, TimeoutError):
        stop(server)
        raise
    # The build's working folder: a checkout of the code with the install phase's .venv.
    work = root / "build"
    work.mkdir()
    (work / "src").symlink_to(PROJECT / "src")
    (work / ".venv").symlink_to(Path(sys.prefix))
    (root / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.update(
        aws,
        TMPDIR=str(root / "tmp"),
        MLFLOW_TRACKING_URI=uri,
        TRACKING="existing",
        TRAINING_DATA_URI=f"s3://{BUCKET}/data/students.csv",
        MODEL_URI=f"s3://{BUCKET}/{STORE_PREFIX}",
        PROMETHEUS_URL=f"http://127.0.0.1:{never_asked.getsockname()[1]}",
    )  # never asked: every retraining has new data

    def mark(text: str) -> None:
        """A line in the server's access log, waited for: what comes before it was logged before it."""
        requests.get(f"{uri}/health", params={"mark": text}, timeout=10)
        deadline = time.monotonic() + 10
        while f"mark={text}" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.1)

    def run(command: str, data_seed: int | None) -> subprocess.CompletedProcess:
        if data_seed is not None:  # new training data lands under data/, as it does in production
            s3.put_object(
                Bucket=BUCKET,
                Key="data/students.csv",
                Body=generate_students(400, seed=data_seed).to_csv(index=False).encode(),
            )
        mark("command-start")
        result = subprocess.run(
            ["bash", "-ec", command], cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        mark("command-end")
        return result

    try:
        wait_for(f"{uri}/health", server, log=log, timeout=120)
        client = mlflow.MlflowClient(tracking_uri=uri)
        steps = []
        steps.append(_observe("build", run(f"{build_command()} {FAST}", 21), client, s3))
        steps.append(_observe("worse", run(f"{retrain_command()} {FAST} {WORSE}", 22), client, s3))
        steps.append(_observe("better", run(f"{retrain_command()} {FAST}", 23), client, s3))
        rollback = '.venv/bin/python -m src.pipeline.promote --store "$MODEL_URI" --rollback'
        steps.append(_observe("rollback", run(rollback, None), client, s3))
        keys = [
            o["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for o in page.get("Contents", [])
        ]
        store_manifest: dict[str, bytes] = {}
        tracked_manifest: dict[str, bytes] = {}
        for version, artifact_uri in steps[-1].run_artifacts.items():
            store_key = f"{STORE_PREFIX}/{version}/manifest.json"
            if store_key in keys:
                store_manifest[version] = s3.get_object(Bucket=BUCKET, Key=store_key)["Body"].read()
            run_id = _run_id(artifact_uri)
            tracked = [
                k
                for k in keys
                if k.startswith(f"{TRACKING_PREFIX}/")
                and f"/{run_id}/" in k
                and k.endswith("/artifacts/artifacts/manifest.json")
            ]
            if tracked:
                tracked_manifest[version] = s3.get_object(Bucket=BUCKET, Key=tracked[0])["Body"].read()
    finally:
        stop(server)
        never_asked.close()
    during = re.findall(r"mark=command-start(.*?)mark=command-end", log.read_text(errors="replace"), re.S)
    yield Production(
        steps=steps,
        keys=keys,
        work=work,
        command_log="\n".join(during),
        store_manifest=store_manifest,
        tracked_manifest=tracked_manifest,
    )


def _run_id(artifact_uri: str) -> str:
    """The run id in ``mlflow-artifacts:/<experiment>/<run id>/artifacts``."""
    return artifact_uri.rstrip("/").split("/")[-2]


def agree(step: Step, production: Production) -> None:
    """Pointer, alias, the alias's run and that run's artifacts in the bucket all name one model."""
    assert step.pointer == step.alias, f"{step.name}: pointer {step.pointer}, alias {step.alias}"
    assert step.alias_run_tags["model_version"] == step.pointer, step.name
    assert _run_id(step.run_artifacts[step.pointer]) == step.alias_run_id, step.name
    assert json.loads(production.tracked_manifest[step.pointer])["model_version"] == step.pointer, step.name


def test_the_build_command_trains_tracked_registers_and_promotes(production):
    build = production.steps[0]
    assert build.returncode == 0, build.output[-3000:]
    assert re.search(rf"^promoted {re.escape(build.pointer)}: first model in the store", build.output, re.M)
    agree(build, production)
    assert build.versions == {"1": {**build.versions["1"], "model_version": build.pointer, "role": CHAMPION}}
    assert build.alias_run_tags["decision"] == "promoted"
    assert build.history == ["1"]


def test_a_worse_challenger_is_kept_out_and_its_run_says_so(production):
    build, worse = production.steps[:2]
    assert worse.returncode == 0, worse.output[-3000:]
    assert "retraining: new data" in worse.output
    assert re.search(rf"^kept {re.escape(build.pointer)}: test R2 .* does not replace it", worse.output, re.M)
    assert worse.pointer == worse.alias == build.pointer
    agree(worse, production)
    [challenger] = set(worse.runs) - {build.pointer}
    assert worse.runs[challenger]["decision"] == "kept"
    assert "does not replace" in worse.runs[challenger]["registry_decision"]
    assert worse.versions["2"]["model_version"] == challenger and worse.versions["2"]["role"] == "challenger"
    assert worse.history == ["1"]
    assert challenger in production.tracked_manifest, "the kept-out run's artifacts are in the bucket too"


def test_a_better_challenger_is_promoted_and_a_rollback_returns_pointer_and_alias_together(production):
    build, worse, better, rollback = production.steps
    assert better.returncode == 0, better.output[-3000:]
    assert re.search(rf"^promoted {re.escape(better.pointer)}: ", better.output, re.M)
    assert better.pointer not in (build.pointer, worse.pointer) and better.alias_run_tags["decision"] == "promoted"
    agree(better, production)
    assert better.history == ["1", "3"]

    assert rollback.returncode == 0, rollback.output[-3000:]
    assert rollback.output.startswith(f"promoted {build.pointer}: rolled back from {better.pointer}")
    agree(rollback, production)
    assert rollback.pointer == build.pointer and rollback.versions["1"]["role"] == CHAMPION
    assert rollback.history == ["1", "3", "1"]


def test_run_artifacts_are_in_the_bucket_beside_the_store_and_not_on_the_build_disk(production):
    tracked = [k for k in production.keys if k.startswith(f"{TRACKING_PREFIX}/")]
    for version, manifest in production.tracked_manifest.items():
        if version in production.store_manifest:  # the same signed manifest in the run and in the store
            assert manifest == production.store_manifest[version]
    assert len(production.tracked_manifest) == 3
    assert sum(k.endswith("plots/predicted_vs_actual.png") for k in tracked) == 3
    assert any(k.endswith("/MLmodel") for k in tracked), "the registered models are in the bucket"
    assert not [k for k in production.keys if not k.startswith(("data/", f"{STORE_PREFIX}/", f"{TRACKING_PREFIX}/"))]
    # Nothing tracked fell back to the build's disk: no sqlite store, no mlruns folder.
    assert not list(production.work.rglob("mlflow.db")) and not list(production.work.rglob("mlruns"))
    for step in production.steps:
        assert all(uri.startswith("mlflow-artifacts:/") for uri in step.run_artifacts.values())


def tracking_calls(log: str) -> set[str]:
    """The tracking server's API operations (MLflow's RPC names) the commands called, from its access log."""
    from mlflow.protos import databricks_pb2, model_registry_pb2, service_pb2

    routes: list[tuple[str, re.Pattern[str], str]] = []
    for service in (service_pb2.MlflowService, model_registry_pb2.ModelRegistryService):
        for method in service.DESCRIPTOR.methods:
            for endpoint in method.GetOptions().Extensions[databricks_pb2.rpc].endpoints:
                path = re.sub(r"\{[^}]+\}", "[^/]+", "/" + endpoint.path.lstrip("/"))
                routes.append((endpoint.method, re.compile(rf"/api/\d+\.\d+{path}"), method.name))
    calls: set[str] = set()
    for method, path, _status in ACCESS_LINE.findall(log):
        if path.startswith("/api/2.0/mlflow-artifacts/"):
            continue  # the proxied artifact transfer: S3 itself in production (the S3 statements)
        names = {name for verb, pattern, name in routes if verb == method and pattern.fullmatch(path)}
        assert len(names) == 1, f"{method} {path}: {names or 'no MLflow operation'}"
        calls |= names
    return calls


# MLflow operations whose IAM action has another name: IAM's list for sagemaker-mlflow (AWS's service
# authorization reference, as cfn-lint 1.58 carries it) has no CreateLoggedModel; LogModel is the action for
# logging a model. Checked against that list only, not against a live server.
AUTHORIZED_AS = {"createLoggedModel": "LogModel"}


def test_the_build_and_retrain_roles_may_make_every_tracking_call_the_commands_made(production):
    calls = tracking_calls(production.command_log)
    assert {"createRun", "logBatch", "createModelVersion", "setRegisteredModelAlias"} <= calls
    template = load(PROJECT / "infra" / "pipeline.yml")
    policy = template["Resources"]["TrackingClientPolicy"]["Properties"]
    assert sorted(r["Ref"] for r in policy["Roles"]) == ["CodeBuildRole", "RetrainRole"]
    allowed = {a for st in policy["PolicyDocument"]["Statement"] for a in st["Action"] if a.startswith("sagemaker-mlflow:")}
    needed = {f"sagemaker-mlflow:{AUTHORIZED_AS.get(name, name[0].upper() + name[1:])}" for name in calls}
    assert needed - allowed == set(), f"calls the roles may not make (the commands made {sorted(needed)})"
    assert allowed - needed == set(), f"permissions no command uses (the commands made {sorted(needed)})"

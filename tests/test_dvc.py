"""DVC for real against a moto S3 server: repro in a fresh clone gives the same model, push and pull restore data.

A temporary git repository is made from the project's files; the data (the public data set) is copied in
and ``dvc add``-ed there, never committed to the project.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from src.storage import sha256_file
from tests.conftest import PROJECT

BIN = Path(sys.executable).parent
DVC = BIN / "dvc"
BUCKET = "student-math-dvc"


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def project_files() -> list[str]:
    """The project's files as git sees them (tracked, plus new files not ignored), that exist on disk."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [name for name in listed if (PROJECT / name).is_file()]


@pytest.fixture()
def env(s3_server, tmp_path):
    if not DVC.exists():
        pytest.skip(f"dvc is not installed in {BIN} (requirements-dvc.txt; scripts/test.sh installs it)")
    import boto3

    home = tmp_path / "home"
    home.mkdir()
    variables = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.org",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.org",
        "DVC_NO_ANALYTICS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    boto3.client(
        "s3", endpoint_url=s3_server, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).create_bucket(Bucket=BUCKET)
    return variables


def stage_outputs(repo: Path) -> tuple[str, str, dict]:
    manifest = json.loads((repo / "reports" / "model" / "manifest.json").read_text())
    return manifest["data"]["fingerprint"], sha256_file(repo / "reports" / "model" / "model.pkl"), manifest


def test_repro_push_pull_and_metrics(env, s3_server, shared_data, tmp_path):
    first = tmp_path / "first"
    for name in project_files():
        (first / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT / name, first / name)
    params = first / "params.yaml"  # a quicker grid than the default: one linear and one randomised model
    params.write_text(
        params.read_text().replace("models: null", "models: [ridge, random_forest]").replace("cv_folds: 5", "cv_folds: 3")
    )
    run(["git", "init", "-q", "-b", "main"], first, env)
    run([str(DVC), "remote", "modify", "storage", "url", f"s3://{BUCKET}/store"], first, env)
    run([str(DVC), "remote", "modify", "storage", "endpointurl", s3_server], first, env)
    data = first / "data" / "students.csv"
    data.parent.mkdir(exist_ok=True)
    shutil.copy2(shared_data / "stud.csv", data)
    run([str(DVC), "add", "data/students.csv"], first, env)
    run(["git", "add", "-A"], first, env)
    run(["git", "commit", "-q", "-m", "project with its data under DVC"], first, env)
    assert "data/students.csv" not in run(["git", "ls-files"], first, env).split()  # only its .dvc pointer

    run([str(DVC), "repro"], first, env, timeout=600)
    fingerprint, model_sha, manifest = stage_outputs(first)
    assert manifest["data"]["source"] == "data/students.csv" and manifest["metrics"]["cv"]["folds"] == 3
    run(["git", "add", "-A"], first, env)
    run(["git", "commit", "-q", "-m", "trained"], first, env)
    run([str(DVC), "push"], first, env)

    # A fresh clone: only the data comes from the remote; repro trains again, to the same model.
    second = tmp_path / "second"
    run(["git", "clone", "-q", str(first), str(second)], tmp_path, env)
    assert not (second / "data" / "students.csv").exists()
    run([str(DVC), "pull", "data/students.csv.dvc"], second, env)
    assert sha256_file(second / "data" / "students.csv") == sha256_file(shared_data / "stud.csv")
    assert not (second / "reports" / "model").exists()
    run([str(DVC), "repro"], second, env, timeout=600)
    assert stage_outputs(second)[:2] == (fingerprint, model_sha)

    # Another clone with an empty cache: `dvc pull` restores the data and the model from the S3 remote.
    third = tmp_path / "third"
    run(["git", "clone", "-q", str(first), str(third)], tmp_path, env)
    run([str(DVC), "pull"], third, env)
    assert sha256_file(third / "data" / "students.csv") == sha256_file(shared_data / "stud.csv")
    assert stage_outputs(third)[:2] == (fingerprint, model_sha)
    assert "Data and pipelines are up to date" in run([str(DVC), "status"], third, env)

    shown = run([str(DVC), "metrics", "show"], third, env)
    r2 = json.loads((third / "reports" / "metrics.json").read_text())["test"]["r2"]
    assert "reports/metrics.json" in shown and "test.r2" in shown and f"{r2:.5f}" in shown, shown
    as_json = json.loads(run([str(DVC), "metrics", "show", "--json"], third, env))
    assert json.dumps(as_json).count(str(r2)) >= 1

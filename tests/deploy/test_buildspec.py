"""buildspec.yml: its phase commands run in a temporary clone, with S3 on a moto server."""

import fnmatch
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from src.synthetic import generate_students

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def buildspec():
    return yaml.safe_load((ROOT / "buildspec.yml").read_text())


def clone_into(target: Path) -> None:
    """The repository's files as a fresh clone would have them (tracked, plus new files not ignored)."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def test_buildspec_shape(buildspec):
    assert str(buildspec["version"]) == "0.2"
    assert buildspec["phases"]["install"]["runtime-versions"]["python"] == 3.11
    pre_build = " ".join(buildspec["phases"]["pre_build"]["commands"])
    assert "ruff check" in pre_build and "pytest" in pre_build
    assert "requirements-dev.txt" in " ".join(buildspec["phases"]["install"]["commands"])


def test_phase_commands_train_and_publish_in_a_clone(buildspec, s3_env, tmp_path):
    clone = tmp_path / "clone"
    clone_into(clone)
    # The install phase builds .venv with pip; here the test's own environment stands in for it.
    (clone / ".venv").symlink_to(Path(sys.prefix))
    s3_env.create_bucket(Bucket="build-models")
    s3_env.put_object(
        Bucket="build-models", Key="data/students.csv", Body=generate_students(400, seed=21).to_csv(index=False).encode()
    )
    env = {
        **os.environ,
        "TRAINING_DATA_URI": "s3://build-models/data/students.csv",
        "MODEL_URI": "s3://build-models/models/student-math",
        "CODEBUILD_BUILD_SUCCEEDING": "1",
        "TMPDIR": str(tmp_path),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "TRACKING": "existing",
        **{k: str(v) for k, v in buildspec["env"]["variables"].items()},
    }
    commands = [c for c in buildspec["phases"]["pre_build"]["commands"] if "pytest" not in c]  # no recursion
    commands += buildspec["phases"]["build"]["commands"]
    result = subprocess.run(
        ["bash", "-ec", "\n".join(commands)], cwd=clone, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    pointer = json.loads(s3_env.get_object(Bucket="build-models", Key="models/student-math/champion.json")["Body"].read())
    keys = {o["Key"] for o in s3_env.list_objects_v2(Bucket="build-models")["Contents"]}
    assert f"models/student-math/{pointer['model_version']}/model.pkl" in keys
    assert f"promoted {pointer['model_version']}" in result.stdout
    assert not [k for k in keys if k.startswith("models/") and k.endswith(".csv") and not k.endswith("/check.csv")], (
        "no student records in the model store"
    )

    bundle = [
        str(p.relative_to(clone))
        for p in clone.rglob("*")
        if p.is_file()
        and ".venv" not in p.parts
        and any(
            fnmatch.fnmatch(str(p.relative_to(clone)), pattern.replace("/**/*", "/*"))
            for pattern in buildspec["artifacts"]["files"]
        )
    ]
    assert {
        "app.py",
        "Procfile",
        "gunicorn.conf.py",
        "requirements.txt",
        "src/schema.py",
        ".ebextensions/01-instance-folders.config",
        ".platform/nginx/nginx.conf",
        "templates/predict.html",
    } <= set(bundle)
    assert not [f for f in bundle if f.startswith(("tests/", "bench/", "data/", "artifacts/"))]
    assert not [f for f in bundle if f.endswith((".csv", ".pkl", ".db"))]


def test_the_build_trains_into_the_store_through_the_decision_only(buildspec):
    """No second path: the build does not publish or move the pointer by itself."""
    commands = " ".join(
        buildspec["phases"]["build"]["commands"] + buildspec["phases"].get("post_build", {}).get("commands", [])
    )
    assert '--store "$MODEL_URI"' in commands
    assert "src.pipeline.publish" not in commands and "champion.json" not in commands


def test_the_build_tracks_unless_the_stack_says_none_and_never_falls_back_silently(buildspec, tmp_path):
    """TRACKING comes from the stack: none passes --no-tracking; otherwise the server's URI must be set."""
    [command] = [c for c in buildspec["phases"]["build"]["commands"] if "src.pipeline.train_pipeline" in c]
    assert '--tracking-uri "${MLFLOW_TRACKING_URI:?' in command  # unset: the shell stops the build, in one line
    fake = tmp_path / ".venv" / "bin" / "python"  # prints the arguments training would get
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)

    def run(**env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["sh", "-ec", command],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "MODEL_URI": "s3://b/m", "TRAINING_DATA_URI": "s3://b/d.csv", **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    untracked = run(TRACKING="none")
    assert untracked.returncode == 0 and untracked.stdout.rstrip().endswith("--no-tracking"), untracked.stderr
    tracked = run(TRACKING="existing", MLFLOW_TRACKING_URI="https://mlflow.example-district.org")
    assert tracked.stdout.rstrip().endswith("--tracking-uri https://mlflow.example-district.org")
    unset = run()
    assert unset.returncode != 0 and unset.stdout == ""
    assert "TRACKING: is not set (the CodeBuild project says none, existing or managed)" in unset.stderr
    install = " ".join(buildspec["phases"]["install"]["commands"])
    assert 'pip install --quiet "mlflow==$MLFLOW_CLIENT_VERSION"' in install  # the managed server's paired client


def test_an_unset_tracking_uri_stops_the_build_before_training(buildspec, tmp_path):
    [command] = [c for c in buildspec["phases"]["build"]["commands"] if "src.pipeline.train_pipeline" in c]
    env = {
        "PATH": "/usr/bin:/bin",
        "MODEL_URI": str(tmp_path / "store"),
        "TRAINING_DATA_URI": "data.csv",
        "TRACKING": "managed",
    }
    result = subprocess.run(
        ["sh", "-ec", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0 and result.stdout == ""
    assert "MLFLOW_TRACKING_URI: is not set (the CodeBuild project names the tracking server)" in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "store").exists()

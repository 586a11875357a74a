"""The serving image, read from its Dockerfile (no Docker engine here), and the workflow job that ships it.

The image runs gunicorn exactly as the run command and the Procfile do, so that gunicorn.conf.py (the one place
server settings live) governs all three; its command is then started here as the image would start it, and the
workflow's smoke test is run against it.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.servers import BIN, PROJECT, gunicorn_bind, listening_socket, start, stop, wait_for

WORKFLOW = PROJECT / ".github" / "workflows" / "ci.yml"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (PROJECT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def image_command() -> list[str]:
    [cmd] = [args for name, args in instructions() if name == "CMD"]
    return json.loads(cmd)  # exec form: gunicorn is PID 1 and receives the stop signal itself


def run_command() -> list[str]:
    """The gunicorn command scripts/run.sh ends with, its binary by name."""
    [line] = [
        line
        for line in (PROJECT / "scripts" / "run.sh").read_text().splitlines()
        if line.startswith("exec ") and "gunicorn" in line
    ]
    argv = shlex.split(line.removeprefix("exec "))
    return [Path(argv[0]).name, *argv[1:]]


def test_the_image_runs_gunicorn_as_the_run_command_and_the_procfile_do():
    procfile = shlex.split((PROJECT / "Procfile").read_text().strip().removeprefix("web: "))
    assert image_command() == run_command() == procfile == ["gunicorn", "-c", "gunicorn.conf.py", "app:app"]
    entrypoints = [args for name, args in instructions() if name == "ENTRYPOINT"]
    assert not entrypoints, "nothing wraps the command"
    env = " ".join(args for name, args in instructions() if name == "ENV")
    assert "GUNICORN_CMD_ARGS" not in env, "no settings beside gunicorn.conf.py"


def test_the_image_runs_as_a_non_root_user_with_the_serving_files_only():
    steps = instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [args for name, args in steps if name == "USER"]
    assert users == ["10001"] and "useradd --create-home --uid 10001 app" in dict(steps)["RUN"]
    assert [i for i, (name, _) in enumerate(steps) if name == "USER"][0] > max(
        i for i, (name, _) in enumerate(steps) if name in ("RUN", "COPY")
    ), "nothing runs as root after USER"
    copied = [args.split()[:-1] for name, args in steps if name == "COPY"]
    sources = {source for group in copied for source in group}
    assert sources == {"requirements.txt", "app.py", "gunicorn.conf.py", "Procfile", "src", "templates", "static"}
    assert all((PROJECT / source).exists() for source in sources)
    installs = [args for name, args in steps if name == "RUN" and "pip install" in args]
    assert installs == [installs[0]] and "-r requirements.txt" in installs[0] and "requirements-t" not in installs[0]
    ignored = (PROJECT / ".dockerignore").read_text().split()
    assert {"tests", "bench", "data", "artifacts", "mlruns", "mlflow.db", ".venv"} <= set(ignored)
    assert any(name == "HEALTHCHECK" and "/ready" in args for name, args in steps)


def test_the_image_command_serves_and_the_smoke_test_passes_against_it(store_dir, trained, tmp_path):
    """What the workflow does with the image, done with the image's command on this machine."""
    listener = listening_socket()
    port = listener.getsockname()[1]
    log = tmp_path / "image.log"
    command = image_command()
    env = {
        "WEB_CONCURRENCY": "2",
        "ARTIFACTS_DIR": str(store_dir),
        "DRIFT_DIR": str(tmp_path / "drift"),
    }
    process = start([str(BIN / command[0]), *command[1:], *gunicorn_bind(listener)], env=env, log=log, listeners=[listener])
    try:
        result = subprocess.run(
            [
                sys.executable,
                "scripts/smoke.py",
                f"http://127.0.0.1:{port}",
                "--wait",
                "60",
                "--model-version",
                trained.manifest["model_version"],
            ],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        stop(process)
    assert result.returncode == 0, result.stdout + result.stderr + log.read_text()[-2000:]
    assert result.stdout.startswith(f"ready with model {trained.manifest['model_version']}; one student predicted ")
    assert result.stdout.count("\n") == 1


def test_the_smoke_test_fails_in_one_line_when_the_service_has_no_model(tmp_path):
    listener = listening_socket()
    port = listener.getsockname()[1]
    log = tmp_path / "image.log"
    command = image_command()
    empty = tmp_path / "empty-store"
    empty.mkdir()
    env = {
        "WEB_CONCURRENCY": "1",
        "ARTIFACTS_DIR": str(empty),
        "DRIFT_DIR": str(tmp_path / "drift"),
    }
    process = start([str(BIN / command[0]), *command[1:], *gunicorn_bind(listener)], env=env, log=log, listeners=[listener])
    try:
        wait_for(f"http://127.0.0.1:{port}/ready", process, status=503, log=log)  # up, and answering "no model"
        result = subprocess.run(
            [sys.executable, "scripts/smoke.py", f"http://127.0.0.1:{port}", "--wait", "8"],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        stop(process)
    assert result.returncode == 1
    assert result.stdout.startswith(f"smoke test failed: http://127.0.0.1:{port}/ready did not answer 200 within 8 s")
    assert "503" in result.stdout and result.stdout.count("\n") == 1


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def step_running(job: dict, text: str) -> dict:
    [step] = [s for s in job["steps"] if text in s.get("run", "")]
    return step


def test_the_workflow_builds_smoke_tests_and_pushes_the_image_on_main(workflow):
    jobs = workflow["jobs"]
    image = jobs["image"]
    assert image["needs"] == "train" and image["timeout-minutes"] <= 30
    [upload] = [s for s in jobs["train"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    [download] = [s for s in image["steps"] if s.get("uses", "").startswith("actions/download-artifact@")]
    assert download["with"]["name"] == upload["with"]["name"]  # the store the train job made
    store = download["with"]["path"]

    build = step_running(image, "docker build")
    assert shlex.split(build["run"])[-1] == "." and '"$IMAGE"' in build["run"]
    assert "${{ github.sha }}" in image["env"]["IMAGE"]

    run = shlex.split(step_running(image, "docker run")["run"])
    mount = run[run.index("--volume") + 1]
    host, target, mode = mount.split(":")
    assert host == f"$PWD/{store}" and mode == "ro"
    assert f"ARTIFACTS_DIR={target}" in [run[i + 1] for i, a in enumerate(run) if a == "--env"]
    published = run[run.index("--publish") + 1]
    assert published == "127.0.0.1:8000:8000" and run[-1] == "$IMAGE" and "--detach" in run

    steps = image["steps"]
    smoke = step_running(image, "scripts/smoke.py")
    assert "http://127.0.0.1:8000" in smoke["run"] and f"{store}/champion.json" in smoke["run"]
    assert "--model-version" in smoke["run"] and "if" not in smoke  # it always runs, and fails the job
    push = step_running(image, "docker push")
    login = next(s for s in steps if s.get("uses", "").startswith("docker/login-action@"))
    on_main = "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert push["if"] == login["if"] == on_main
    assert login["with"]["registry"] == "ghcr.io" and login["with"]["password"] == "${{ secrets.GITHUB_TOKEN }}"
    assert 'target="ghcr.io/${GITHUB_REPOSITORY,,}:${GITHUB_SHA}"' in push["run"]
    assert steps.index(smoke) < steps.index(login) < steps.index(push), "only a smoke-tested image is pushed"
    assert image["permissions"] == {"contents": "read", "packages": "write"}
    assert workflow["permissions"] == {"contents": "read"}, "no other job may write packages"

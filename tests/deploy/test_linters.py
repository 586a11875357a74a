"""Dockerfile, docker-compose.yml and the GitHub workflow, checked by their linters (no Docker engine here)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -r requirements-dev.txt")
    return path


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_hadolint_passes_on_the_dockerfile():
    result = run(tool("hadolint"), "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_slim_non_root_with_a_ready_healthcheck_and_the_procfile_command():
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text and "\nUSER 10001\n" in text
    assert "HEALTHCHECK" in text and "/ready" in text
    assert 'CMD ["gunicorn", "-c", "gunicorn.conf.py", "app:app"]' in text


def test_docker_compose_config_is_valid():
    result = run(tool("docker-compose"), "-f", "docker-compose.yml", "config", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "docker-compose.yml").read_text()
    for service in ("app:", "mlflow:", "prometheus:", "grafana:", "minio:"):
        assert f"\n  {service}" in text


def test_actionlint_passes_on_the_workflows():
    result = run(tool("actionlint"))
    assert result.returncode == 0, result.stdout + result.stderr

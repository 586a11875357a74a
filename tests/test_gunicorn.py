"""gunicorn really serving app:app with the Procfile's command, on 127.0.0.1."""

import shlex
from pathlib import Path

import requests

from tests.conftest import free_port
from tests.servers import BIN, PROJECT, start, stop, wait_for


def procfile_command() -> list[str]:
    line = (PROJECT / "Procfile").read_text().strip()
    assert line.startswith("web: gunicorn ") and line.endswith(" app:app")
    argv = shlex.split(line.removeprefix("web: "))
    return [str(BIN / argv[0]), *argv[1:]]


def test_gunicorn_serves_predictions_with_the_procfile_command(store_dir, trained, tmp_path, student):
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = {"PORT": str(port), "HOST": "127.0.0.1", "WEB_CONCURRENCY": "2",
           "ARTIFACTS_DIR": str(store_dir), "DRIFT_DIR": str(tmp_path / "drift")}
    process = start(procfile_command(), env=env, log=log)
    try:
        ready = wait_for(f"http://127.0.0.1:{port}/ready", process, log=log)
        assert ready.json()["model_version"] == trained.manifest["model_version"]
        response = requests.post(f"http://127.0.0.1:{port}/predictdata", json=student, timeout=5)
        assert response.status_code == 200 and 0 <= response.json()["math_score"] <= 100
    finally:
        stop(process)
    assert process.returncode is not None
    assert "Traceback" not in Path(log).read_text()

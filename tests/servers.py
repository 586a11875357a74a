"""Starting real servers on 127.0.0.1 for tests, and stopping them by PID. Every wait is bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def start(
    cmd: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path = PROJECT, log: Path | None = None
) -> subprocess.Popen:
    full_env = {**os.environ, **(env or {})}
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    return subprocess.Popen(list(cmd), env=full_env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def start_gunicorn(
    port: int, store: str | Path, folder: Path, *, workers: int = 1, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen, Path]:
    """The app under gunicorn (gunicorn.conf.py) on 127.0.0.1:``port`` serving ``store``; its log in ``folder``."""
    log = folder / "gunicorn.log"
    process = start(
        [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "app:app"],
        log=log,
        env={
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "WEB_CONCURRENCY": str(workers),
            "ARTIFACTS_DIR": str(store),
            "PROMETHEUS_MULTIPROC_DIR": str(folder / "mp"),
            **(env or {}),
        },
    )
    return process, log


def wait_for(
    url: str, process: subprocess.Popen, *, timeout: float = 60.0, status: int | None = 200, log: Path | None = None
) -> requests.Response:
    """Poll ``url`` until it answers (with ``status`` if given); fail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            detail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before {url} answered\n{detail}")
        try:
            response = requests.get(url, timeout=2)
            if status is None or response.status_code == status:
                return response
            last = response.status_code
        except requests.RequestException as err:
            last = err
        time.sleep(0.2)
    detail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{url} did not answer {status} within {timeout:.0f} s (last: {last})\n{detail}")


def stop(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop the process and its children by process group; kill if it does not stop in time."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        pass

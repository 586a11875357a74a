"""Starting real servers on 127.0.0.1 for tests, and stopping them by PID. Every wait is bounded.

A server listens on a socket the test opened first (``listening_socket``, handed over with ``start(...,
listeners=[sock])``: gunicorn's ``--bind fd://N``, uvicorn's ``--fd N``), or on port 0, the port it was given
read back from the system (``listening_port``). No port is ever chosen free, released, then bound by the server:
another program could take it in between.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def listening_socket() -> socket.socket:
    """A TCP socket listening on 127.0.0.1, on a port the system chose: hand it to the server with ``start``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def gunicorn_bind(sock: socket.socket) -> list[str]:
    """gunicorn's options to serve on ``sock`` (inherited by ``start``); they override gunicorn.conf.py's bind."""
    return ["--bind", f"fd://{sock.fileno()}"]


def refusing_socket() -> socket.socket:
    """A socket bound to a port of 127.0.0.1 and never listening: while it is open, every connection to that port
    is refused (no other program can take the port). Close it when done (``with refusing_socket() as sock:``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


# For a test's ``mlflow server``: without its job runner, which would start seven more Python processes (huey
# consumers for server-side jobs such as GenAI evaluations) that this project never uses.
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def start(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path = PROJECT,
    log: Path | None = None,
    listeners: Sequence[socket.socket] = (),
) -> subprocess.Popen:
    """Start ``cmd`` in its own process group; ``listeners`` are inherited under the same numbers, then closed here
    (the server holds them: the port is free again only when it exits)."""
    full_env = {**os.environ, **(env or {})}
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    try:
        return subprocess.Popen(
            list(cmd),
            env=full_env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=[sock.fileno() for sock in listeners],
        )
    finally:
        for sock in listeners:
            sock.close()


def listening_port(process: subprocess.Popen, *, timeout: float = 60.0, log: Path | None = None) -> int:
    """The TCP port that ``process`` or one of its children (started with port 0) listens on, read from the system
    once one does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            detail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before listening\n{detail}")
        ports = _listening_ports(process.pid)
        if ports:
            return min(ports)
        time.sleep(0.2)
    raise TimeoutError(f"{process.args[0]} did not listen on a TCP port within {timeout:.0f} s")


def _listening_ports(group: int) -> set[int]:
    """Ports of the TCP sockets in state LISTEN held by the processes of process group ``group`` (Linux: /proc;
    ``start`` makes each server the leader of its own group)."""
    inodes: set[str] = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != group:  # the fields after the command: state, ppid, pgrp
                continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
        except OSError:  # the process exited, or a descriptor closed, while it was read
            continue
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def start_gunicorn(
    listener: socket.socket,
    store: str | Path,
    folder: Path,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen, Path]:
    """The app under gunicorn (gunicorn.conf.py) on ``listener`` (``listening_socket()``) serving ``store``; its log
    in ``folder``."""
    log = folder / "gunicorn.log"
    process = start(
        [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "app:app", *gunicorn_bind(listener)],
        log=log,
        listeners=[listener],
        env={
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


def wait_until(check, timeout: float, what: str):
    """Call ``check`` every 0.5 s until it returns something true (returned); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached within {timeout:.0f} s (last: {last})")


def run_smoke(url: str, *, wait: int, timeout: float, model_version: str | None = None) -> subprocess.CompletedProcess:
    """``scripts/smoke.py`` against ``url`` (waiting up to ``wait`` s for it), expecting ``model_version`` if given."""
    expected = [] if model_version is None else ["--model-version", model_version]
    return subprocess.run(
        [sys.executable, "scripts/smoke.py", url, "--wait", str(wait), *expected],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )

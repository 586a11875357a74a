"""Load with one gunicorn worker killed midway: what fails, how the service recovers, whether metrics stay exact.

    .venv/bin/python bench/kill_worker.py                  # wrk -c32 for 60 s, SIGKILL to one of 2 workers at 30 s
    .venv/bin/python bench/kill_worker.py --duration 15    # the shorter run the test suite makes

gunicorn (2 sync workers, the project's settings) serves on 127.0.0.1 a model trained on the synthetic cohort
in a temporary folder; wrk POSTs one student per request. Halfway, one worker gets SIGKILL. Printed: the
requests wrk saw answered (and with which status), its socket errors, how long until the master had a new
worker serving, and ``model_predictions_total`` from /metrics afterwards against the predictions answered.

A sync worker handles one request at a time, so only the request it was answering can fail. Answered
predictions are counted from gunicorn's access log (a line per answer written); wrk's own count leaves out the
requests in flight when it stops. The killed worker's last request is the one that may be counted once and
not logged (or the reverse): ``counted - answered`` may differ from 0 by that one request only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STUDENT = {
    "gender": "female",
    "race_ethnicity": "group B",
    "parental_level_of_education": "bachelor's degree",
    "lunch": "standard",
    "test_preparation_course": "none",
    "reading_score": 72,
    "writing_score": 74,
}
LUA = """
wrk.method = "POST"
wrk.body = [==[%s]==]
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("WRK requests=%%d status_errors=%%d connect=%%d read=%%d write=%%d timeout=%%d\\n",
    summary.requests, summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout))
end
"""


@dataclass(frozen=True)
class Outcome:
    duration_s: float
    connections: int
    responses: int  # answers wrk received, any status
    non_2xx: int
    socket_errors: dict[str, int]
    failed: int  # requests that got no answer (socket errors) or an error status
    answered_predictions: int  # 200 answers to POST /predictdata the workers sent (gunicorn's access log)
    counted_predictions: int
    killed_pid: int
    replacement_pid: int
    recovered_after_s: float  # from the kill until the master had a new worker answering
    ready_after: bool
    probes: int  # predictions sent while checking for the new worker (in answered_predictions)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_model(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from src.lifecycle.training import TrainingConfig, train

    result = train(
        TrainingConfig(store=folder, synthetic_rows=400, cv_folds=3, candidates=("ridge",), tracking=False, n_jobs=1)
    )
    return Path(result.store)


def workers_of(master: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True, text=True, check=False)
    return sorted(int(p) for p in out.stdout.split())


def run(duration: float = 60.0, connections: int = 32, artifacts: Path | None = None, work: Path | None = None) -> Outcome:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise FileNotFoundError("wrk is not installed (Debian package wrk)")
    work = work or Path(tempfile.mkdtemp(prefix="kill-worker-"))
    artifacts = artifacts or train_model(work / "artifacts")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "gunicorn.log", "wb")  # noqa: SIM115 - closed below
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "ARTIFACTS_DIR": str(artifacts),
        "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics"),
        "DRIFT_DIR": str(work / "drift"),
        "GUNICORN_ACCESS_LOG": str(work / "access.log"),
    }
    server = subprocess.Popen(
        [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "app:app"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_ready(url, server)
        for _ in range(20):  # both workers up and answering
            requests.post(f"{url}/predictdata", json=STUDENT, timeout=5).raise_for_status()
        before = _counted(url)
        script = work / "post.lua"
        script.write_text(LUA % json.dumps(STUDENT))
        load = subprocess.Popen(
            [
                wrk,
                "-t2",
                f"-c{connections}",
                f"-d{duration:.0f}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                f"{url}/predictdata",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(duration / 2)
        old = workers_of(server.pid)
        victim = old[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        replacement, recovered, probes = 0, float("nan"), 0
        while time.monotonic() - killed_at < duration / 2 + 60:  # a new worker imports the app: seconds
            new = [p for p in workers_of(server.pid) if p not in old]
            if new and replacement == 0:
                replacement = new[0]
            if replacement:
                answered, serving = _served_by(url, replacement)
                probes += answered
                if serving:
                    recovered = time.monotonic() - killed_at
                    break
            time.sleep(0.05)
        output, _ = load.communicate(timeout=duration + 60)
        found = re.search(
            r"WRK requests=(\d+) status_errors=(\d+) connect=(\d+) read=(\d+) write=(\d+) "
            r"timeout=(\d+)",
            output,
        )
        if not found:
            raise RuntimeError(f"wrk printed no summary:\n{output}")
        responses, non_2xx, *errors = (int(v) for v in found.groups())
        socket_errors = dict(zip(("connect", "read", "write", "timeout"), errors, strict=True))
        _settle(work / "access.log")  # requests in flight when wrk stopped: answered and logged before counting
        counted = _counted(url) - before
        ready = requests.get(f"{url}/ready", timeout=5).status_code == 200
        answered = _answered(work / "access.log") - 20  # the warm-up's
        return Outcome(
            duration,
            connections,
            responses,
            non_2xx,
            socket_errors,
            non_2xx + sum(errors),
            answered,
            int(counted),
            victim,
            replacement,
            round(recovered, 3),
            ready,
            probes,
        )
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        log.close()


def _wait_ready(url: str, server: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("gunicorn exited before it was ready")
        try:
            if requests.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url}/ready did not answer 200 within {timeout:.0f} s")


def _served_by(url: str, pid: int) -> tuple[int, bool]:
    """Send one prediction (1 if answered); True once worker ``pid`` serves: its ``pid`` series are in /metrics."""
    answered = 0
    try:
        answered = int(requests.post(f"{url}/predictdata", json=STUDENT, timeout=2).status_code == 200)
        return answered, f'process_cpu_seconds_total{{pid="{pid}"}}' in requests.get(f"{url}/metrics", timeout=2).text
    except requests.RequestException:
        return answered, False


def _answered(access_log: Path) -> int:
    """Predictions the workers sent (gunicorn logs a request once its answer is written), wrk's and the probes'.

    wrk's own count leaves out the requests in flight when it stops (up to one per connection): the server
    answered them, but wrk no longer read the answers.
    """
    return len(re.findall(r'"POST /predictdata HTTP/1\.1" 200 ', access_log.read_text()))


def _settle(access_log: Path, rounds: int = 20) -> None:
    """Wait (at most ``rounds`` x 0.1 s) until the workers log no more answers: wrk stops with requests in
    flight, which the workers still count and log; read too early, one is counted and not yet logged."""
    last = -1
    for _ in range(rounds):
        now = _answered(access_log)
        if now == last:
            return
        last = now
        time.sleep(0.1)


def _counted(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(r'^model_predictions_total\{channel="\w+"\} (\S+)$', text, re.MULTILINE))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    outcome = run(args.duration, args.connections)
    for key, value in asdict(outcome).items():
        sys.stdout.write(f"{key:22} {value}\n")
    extra = outcome.counted_predictions - outcome.answered_predictions
    sys.stdout.write(
        f"\nfailed {outcome.failed} of {outcome.responses + sum(outcome.socket_errors.values())} "
        f"requests wrk completed; counted - answered = {extra} (the killed worker's request: -1 to 1); "
        f"recovered in {outcome.recovered_after_s} s; ready afterwards: {outcome.ready_after}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""gunicorn really serving app:app with the Procfile's command, on 127.0.0.1."""

import contextlib
import math
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.servers import BIN, PROJECT, gunicorn_bind, listening_socket, start, stop, wait_for, wait_until


def procfile_command() -> list[str]:
    line = (PROJECT / "Procfile").read_text().strip()
    assert line.startswith("web: gunicorn ") and line.endswith(" app:app")
    argv = shlex.split(line.removeprefix("web: "))
    return [str(BIN / argv[0]), *argv[1:]]


def test_gunicorn_serves_predictions_with_the_procfile_command(store_dir, trained, tmp_path, student):
    listener = listening_socket()
    port = listener.getsockname()[1]
    log = tmp_path / "gunicorn.log"
    env = {
        "WEB_CONCURRENCY": "2",
        "ARTIFACTS_DIR": str(store_dir),
        "DRIFT_DIR": str(tmp_path / "drift"),
    }
    process = start([*procfile_command(), *gunicorn_bind(listener)], env=env, log=log, listeners=[listener])
    try:
        ready = wait_for(f"http://127.0.0.1:{port}/ready", process, log=log)
        assert ready.json()["model_version"] == trained.manifest["model_version"]
        response = requests.post(f"http://127.0.0.1:{port}/predictdata", json=student, timeout=5)
        assert response.status_code == 200 and 0 <= response.json()["math_score"] <= 100
    finally:
        stop(process)
    assert process.returncode is not None
    assert "Traceback" not in Path(log).read_text()


def serve(trained, tmp_path, env_extra: dict | None = None, workers: int = 2):
    """Start gunicorn with the project's settings on a socket opened here; return (process, base URL, log path)."""
    listener = listening_socket()
    port = listener.getsockname()[1]
    log = tmp_path / f"gunicorn-{port}.log"
    env = {
        "WEB_CONCURRENCY": str(workers),
        "ARTIFACTS_DIR": trained.store,
        **(env_extra or {}),
    }
    command = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "app:app", *gunicorn_bind(listener)]
    process = start(command, env=env, log=log, listeners=[listener])
    return process, f"http://127.0.0.1:{port}", log


def test_metrics_stay_small_after_100_bodies_of_20000_unknown_fields_under_gunicorn(trained, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from tests.web.test_metrics import unknown_keys_bodies

    multiproc = tmp_path / "multiproc"
    process, url, log = serve(trained, tmp_path, {"PROMETHEUS_MULTIPROC_DIR": str(multiproc)})
    try:
        wait_for(f"{url}/ready", process, log=log)
        before = len(requests.get(f"{url}/metrics", timeout=10).content)

        def post(body: bytes) -> int:
            return requests.post(
                f"{url}/predictdata", data=body, timeout=60, headers={"Content-Type": "application/json"}
            ).status_code

        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(post, unknown_keys_bodies()))
        assert statuses == [422] * 100
        scrape = requests.get(f"{url}/metrics", timeout=10)
        assert len(scrape.content) < 64 * 1024, (before, len(scrape.content))
        assert 'model_validation_failures_total{field="other"} 2e+06' in scrape.text
        files = sum(p.stat().st_size for p in multiproc.rglob("*") if p.is_file())
        assert files < 8 * 1024 * 1024, files  # the workers' files did not grow with the field names
    finally:
        stop(process)


def test_a_metrics_folder_with_foreign_files_is_refused_and_left_untouched(trained, tmp_path):
    folder = tmp_path / "shared"
    (folder / "models").mkdir(parents=True)
    precious = folder / "models" / "model.pkl"
    precious.write_bytes(b"the model")
    stale = folder / "counter_12345.db"
    stale.write_bytes(b"x")
    process, url, log = serve(trained, tmp_path, {"PROMETHEUS_MULTIPROC_DIR": str(folder)})
    try:
        assert process.wait(timeout=60) != 0
    finally:
        stop(process)
    text = log.read_text()
    assert f"PROMETHEUS_MULTIPROC_DIR={folder} holds files this server did not create (models/)" in text
    assert "refusing to start" in text and "Traceback" not in text
    assert precious.read_bytes() == b"the model" and stale.exists()  # nothing deleted, not even its own kind


def test_only_the_servers_own_files_are_cleaned_at_start(trained, tmp_path):
    folder = tmp_path / "multiproc"
    (folder / "drift").mkdir(parents=True)
    own = [
        folder / "counter_12345.db",
        folder / "gauge_livesum_12345.db",
        folder / "histogram_99.db",
        folder / "drift" / "drift-window.bin",
    ]
    for path in own:
        path.write_bytes(b"stale")
    process, url, log = serve(trained, tmp_path, {"PROMETHEUS_MULTIPROC_DIR": str(folder)}, workers=1)
    try:
        wait_for(f"{url}/ready", process, log=log)
        assert not any(path.exists() and path.read_bytes() == b"stale" for path in own)
    finally:
        stop(process)


def test_a_temporary_metrics_folder_is_removed_when_the_server_exits(trained, tmp_path):
    import os

    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {"TMPDIR": str(temp)}
    process, url, log = serve(trained, tmp_path, env, workers=2)
    try:
        wait_for(f"{url}/ready", process, log=log)
        # both workers booted (each logs its model), so that the stop below is not one during a worker's boot
        wait_until(lambda: log.read_text(errors="replace").count("loaded model") >= 2, 60, "both workers' models loaded")
        requests.get(f"{url}/metrics", timeout=10)
        created = [p for p in temp.iterdir() if p.name.startswith("student-math-metrics-")]
        assert len(created) == 1 and any(created[0].glob("*.db"))
    finally:
        stop(process)
    assert process.returncode == 0, log.read_text()[-2000:]
    assert not created[0].exists(), sorted(os.listdir(created[0]))


def test_nested_and_oversize_chunked_bodies_under_gunicorn(trained, tmp_path, student):
    import json
    import socket

    process, url, log = serve(trained, tmp_path, {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "mp")}, workers=1)
    try:
        wait_for(f"{url}/ready", process, log=log)
        nested = b'{"instances": ' + b"[" * 1000 + b"]" * 1000 + b"}"
        response = requests.post(f"{url}/predictdata", data=nested, headers={"Content-Type": "application/json"}, timeout=10)
        assert response.status_code == 400 and response.json()["error"] == "nesting_too_deep"

        def chunks(total: int, size: int = 1 << 20):
            yield b"["
            sent = 1
            while sent < total:
                piece = b" " * min(size, total - sent)
                sent += len(piece)
                yield piece

        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(
                b"POST /predictdata HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            for piece in chunks(20 * 1024 * 1024):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413"), head
        assert json.loads(body)["error"] == "request_entity_too_large"
        # a chunked body within the limit is answered as usual
        small = requests.post(
            f"{url}/predictdata",
            data=iter([json.dumps(student).encode()]),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert small.status_code == 200 and 0 <= small.json()["math_score"] <= 100
        assert requests.get(f"{url}/health", timeout=5).status_code == 200
    finally:
        stop(process)
    assert "Traceback" not in log.read_text()


def test_the_access_log_never_holds_a_result_pages_query(trained, tmp_path, student):
    access = tmp_path / "access.log"
    process, url, log = serve(trained, tmp_path, {"GUNICORN_ACCESS_LOG": str(access)}, workers=1)
    try:
        wait_for(f"{url}/ready", process, log=log)
        form = {k: str(v) for k, v in student.items()}
        response = requests.post(f"{url}/predictdata", data=form, timeout=5)
        assert response.status_code == 200 and "gender=female" in response.url  # followed to the result page
    finally:
        stop(process)
    lines = access.read_text().splitlines()
    assert any('"GET /predictdata HTTP/1.1" 200' in line for line in lines), lines
    assert any('"POST /predictdata HTTP/1.1" 303' in line for line in lines), lines
    assert not any("gender" in line or "reading_score" in line for line in lines), lines


def test_api_tokens_under_gunicorn_two_configured_either_opens_the_api_the_form_needs_none(trained, tmp_path, student):
    import hashlib

    tokens = ("school-system-token-one-0123456789", "school-system-token-two-9876543210")
    digests = ",".join(hashlib.sha256(t.encode()).hexdigest() for t in tokens)
    process, url, log = serve(
        trained, tmp_path, {"API_TOKEN_SHA256": digests, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "mp")}
    )
    try:
        wait_for(f"{url}/ready", process, log=log)
        missing = requests.post(f"{url}/predictdata", json=student, timeout=5)
        wrong = requests.post(
            f"{url}/predictdata", json=student, timeout=5, headers={"Authorization": "Bearer not-a-token-of-this-server"}
        )
        for refused in (missing, wrong):
            assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
            assert refused.headers["WWW-Authenticate"] == 'Bearer realm="api"'
        for token in tokens:
            answered = requests.post(
                f"{url}/predictdata", json=student, timeout=5, headers={"Authorization": f"Bearer {token}"}
            )
            assert answered.status_code == 200 and 0 <= answered.json()["math_score"] <= 100
        form = requests.post(
            f"{url}/predictdata", data={k: str(v) for k, v in student.items()}, timeout=5, allow_redirects=False
        )
        assert form.status_code == 303
        page = requests.get(url + form.headers["Location"], timeout=5, headers={"X-Forwarded-Proto": "https"})
        assert page.status_code == 200 and "Strict-Transport-Security" in page.headers
    finally:
        stop(process)
    assert "Traceback" not in log.read_text()


def run_sh_command() -> list[str]:
    """The command scripts/run.sh ends with (the README's run command; the Dockerfile's CMD is the same)."""
    line = next(line for line in (PROJECT / "scripts" / "run.sh").read_text().splitlines() if line.startswith("exec "))
    argv = shlex.split(line.removeprefix("exec "))
    assert argv[1:] == ["-c", "gunicorn.conf.py", "app:app"] and argv[0].endswith("gunicorn"), argv
    docker = next(line for line in (PROJECT / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    assert docker == 'CMD ["gunicorn", "-c", "gunicorn.conf.py", "app:app"]', docker
    return [str(BIN / "gunicorn"), *argv[1:]]


def stalled_post(port: int, declared: int = 1000, sent: bytes = b'{"gender": ') -> socket.socket:
    """A POST that declares ``declared`` body bytes, sends ``sent`` of them and then nothing more."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        b"POST /predictdata HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (declared, sent)
    )
    return sock


def read_answer(sock: socket.socket, deadline: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed it."""
    answer = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:  # closed while bytes the client sent were unread: the kernel resets
            return answer, time.monotonic()
        if not chunk:
            return answer, time.monotonic()
        answer += chunk
    return answer, math.inf


def test_twenty_stalled_bodies_neither_hold_health_nor_outlive_the_body_timeout(trained, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    timeout = 3.0
    listener = listening_socket()
    port = listener.getsockname()[1]
    log = tmp_path / "gunicorn.log"
    # as scripts/run.sh starts it: its command, its variables, the default number of workers (on a socket opened
    # here rather than HOST and PORT)
    process = start(
        [*run_sh_command(), *gunicorn_bind(listener)],
        log=log,
        listeners=[listener],
        env={
            "ARTIFACTS_DIR": trained.store,
            "BODY_TIMEOUT_SECONDS": str(timeout),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "mp"),
        },
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/ready", process, log=log)
        opened = time.monotonic()
        stalled = [stalled_post(port) for _ in range(19)]
        stalled.append(stalled_post(port, declared=5000, sent=b"["))  # and one that trickles a byte at a time
        trickle = stalled[-1]
        with ThreadPoolExecutor(len(stalled)) as pool:
            answers = [pool.submit(read_answer, sock, opened + timeout + 10) for sock in stalled]
            latencies = []
            while time.monotonic() < opened + timeout + 1.5:
                started = time.monotonic()
                assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
                latencies.append(time.monotonic() - started)
                with contextlib.suppress(OSError):
                    trickle.sendall(b" ")
                time.sleep(0.1)
            results = [future.result() for future in answers]
        for sock in stalled:
            sock.close()
    finally:
        stop(process)
    assert max(latencies) < 1.0, latencies
    for answer, closed in results:
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b'"error": "request_timeout"' in answer
        assert closed - opened <= timeout + 1.0, closed - opened  # closed at the deadline, not by gunicorn's timeout
    assert "Traceback" not in log.read_text()


def test_a_declared_length_over_the_limit_is_refused_before_any_body_byte(trained, tmp_path):
    process, url, log = serve(trained, tmp_path, {"MAX_CONTENT_LENGTH": "4096"}, workers=1)
    try:
        wait_for(f"{url}/ready", process, log=log)
        sock = stalled_post(int(url.rsplit(":", 1)[1]), declared=10**9, sent=b"")
        sock.settimeout(1.0)
        first = sock.recv(65536)  # within a second, though not one byte of the body was sent
        # gunicorn then drains what the client may still send, for a few seconds at most, and closes
        rest, closed = read_answer(sock, time.monotonic() + 10)
        sock.close()
    finally:
        stop(process)
    assert first.startswith(b"HTTP/1.1 413"), first[:200]
    assert b"request_entity_too_large" in first + rest and closed < math.inf


def test_no_two_servers_share_a_control_socket(trained, tmp_path):
    runtime, home = tmp_path / "runtime", tmp_path / "home"
    runtime.mkdir()
    home.mkdir()
    env = {"XDG_RUNTIME_DIR": str(runtime), "HOME": str(home)}  # where gunicorn's default socket would go
    servers = [serve(trained, tmp_path, env, workers=1) for _ in range(2)]
    try:
        for process, url, log in servers:
            wait_for(f"{url}/ready", process, log=log)
        stop(servers[0][0])
        assert requests.get(f"{servers[1][1]}/health", timeout=5).status_code == 200
        assert not list(runtime.iterdir()) and not list(home.iterdir()), (list(runtime.iterdir()), list(home.iterdir()))
    finally:
        for process, _, _ in servers:
            stop(process)
    assert "control" not in servers[1][2].read_text().lower()


def test_the_access_log_keeps_one_line_per_request_whatever_the_path_holds(trained, tmp_path):
    access = tmp_path / "access.log"
    process, url, log = serve(trained, tmp_path, {"GUNICORN_ACCESS_LOG": str(access)}, workers=1)
    forged = "/x%0d%0a127.0.0.1 - - [01/Jan/2030:00:00:00 +0000] %22GET /admin HTTP/1.1%22 200 0%00%5c".replace(" ", "%20")
    try:
        wait_for(f"{url}/ready", process, log=log)
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"GET {forged} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            assert read_answer(sock, time.monotonic() + 5)[0].startswith(b"HTTP/1.1 404")
    finally:
        stop(process)
    raw = access.read_bytes()
    lines = raw.decode().splitlines()
    assert b"\x00" not in raw and not any(line.startswith("127.0.0.1 - - [01/Jan/2030") for line in lines), lines
    mine = [line for line in lines if "/x" in line]
    assert len(mine) == 1 and "/x\\x0d\\x0a127.0.0.1" in mine[0] and '\\"GET /admin' in mine[0], mine


def test_headers_trickled_a_byte_at_a_time_are_closed_after_the_keepalive_time_not_each_gap(trained, tmp_path):
    """A request's headers must come whole within gunicorn's ``keepalive`` seconds (5), however they are spaced."""
    process, url, log = serve(trained, tmp_path, workers=1)
    try:
        wait_for(f"{url}/ready", process, log=log)
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
            started = time.monotonic()
            closed = math.inf
            while time.monotonic() < started + 12:
                try:
                    sock.sendall(b"a")  # a byte a second: each gap far within any per-read timeout
                except OSError:
                    closed = time.monotonic()
                    break
                answer, closed = read_answer(sock, time.monotonic() + 1)
                if closed < math.inf:
                    break
        assert requests.get(f"{url}/health", timeout=5).status_code == 200
    finally:
        stop(process)
    assert 4.5 < closed - started < 7.5, closed - started


def test_a_server_holding_an_idle_keep_alive_connection_stops_within_docker_stops_wait(trained, tmp_path):
    """An idle keep-alive connection ends after ``keepalive`` (5 s): the server stops well within the 10 s
    ``docker stop`` (and Elastic Beanstalk) wait before killing it."""
    process, url, log = serve(trained, tmp_path, workers=1)
    try:
        wait_for(f"{url}/ready", process, log=log)
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as idle:
            idle.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert idle.recv(65536).startswith(b"HTTP/1.1 200")  # and the connection stays open, idle
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
            stopped = time.monotonic() - started
    finally:
        stop(process)
    assert process.returncode == 0 and stopped < 9.0, (process.returncode, stopped)


def test_a_worker_that_has_answered_nothing_yet_follows_a_new_champion(trained, tmp_path):
    import io
    import json
    import shutil

    from src.pipeline import retrain
    from src.synthetic import generate_students

    store = tmp_path / "store"
    shutil.copytree(trained.store, store)
    first = json.loads((store / "champion.json").read_text())["model_version"]
    process, url, log = serve(trained, tmp_path, {"ARTIFACTS_DIR": str(store), "MODEL_REFRESH_SECONDS": "1"})
    try:
        deadline = time.monotonic() + 60  # both workers have loaded the app; no request made to either
        while log.read_text(errors="replace").count("loaded model") < 2:
            assert time.monotonic() < deadline and process.poll() is None, log.read_text(errors="replace")[-2000:]
            time.sleep(0.2)
        data = tmp_path / "students.csv"
        generate_students(600, seed=2).to_csv(data, index=False)
        out = io.StringIO()
        assert (
            retrain.main(
                [
                    "--store",
                    str(store),
                    "--runs-dir",
                    str(tmp_path / "runs"),
                    "--data",
                    str(data),
                    "--synthetic-rows",
                    "300",
                    "--cv-folds",
                    "3",
                    "--models",
                    "ridge",
                    "--n-jobs",
                    "1",
                    "--no-tracking",
                    "--champion-tolerance",
                    "1.0",
                ],
                out=out,
            )
            == 0
        ), out.getvalue()
        second = json.loads((store / "champion.json").read_text())["model_version"]
        assert second != first
        deadline = time.monotonic() + 30  # each worker, refreshing every second, loads the new champion unasked
        while log.read_text(errors="replace").count(f"loaded model {second}") < 2:
            assert time.monotonic() < deadline and process.poll() is None, log.read_text(errors="replace")[-2000:]
            time.sleep(0.2)
        seen: dict[int, set[str]] = {}
        for _ in range(200):  # each worker's very first answers count: until both workers have answered
            body = requests.get(f"{url}/ready", timeout=5).json()
            seen.setdefault(body["worker"], set()).add(body["model_version"])
            if len(seen) == 2:
                break
        assert len(seen) == 2 and all(versions == {second} for versions in seen.values()), seen
    finally:
        stop(process)


@pytest.mark.parametrize(
    ("env", "expected"), [({"HOST": "127.0.0.1", "PORT": "8123"}, "127.0.0.1:8123"), ({}, "0.0.0.0:8000")]
)
def test_the_settings_listen_where_host_and_port_say(env, expected, tmp_path):
    """The servers above get a socket opened by the test (--bind fd://N); this is where the settings alone bind."""
    code = "import runpy; print(runpy.run_path('gunicorn.conf.py')['bind'])"
    clean = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT,
        env={**clean, **env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected

"""The release as an Elastic Beanstalk instance runs it: the bundle the build makes, gunicorn from its Procfile,
and nginx in front with the platform's layout and the bundle's .platform files, all on 127.0.0.1.

The bundle is zipped exactly as buildspec.yml's ``artifacts`` lists it (from the files a fresh clone has). The
instance: the zip unpacked, gunicorn started by the Procfile's command in that folder, and Debian's nginx with
Elastic Beanstalk's layout: the bundle's ``.platform/nginx`` copied over an nginx folder that holds the file the
platform generates (``conf.d/elasticbeanstalk/00_application.conf``: ``location /`` proxying to the app's PORT).
The bundle's nginx.conf is used as it is, with only what belongs to this machine replaced (the listen address,
the log, pid and temporary paths, and the ``user`` line, since the test runs as one user); each replacement must
match, so a changed file fails here instead of passing untested.
"""

from __future__ import annotations

import fnmatch
import http.client
import shlex
import shutil
import socket
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import unavailable
from tests.servers import BIN, PROJECT, gunicorn_bind, listening_socket, run_smoke, start, stop, wait_for

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# What Elastic Beanstalk generates into conf.d/elasticbeanstalk/ on the instance: the proxy to the app's PORT.
GENERATED_APPLICATION_CONF = """location / {
    proxy_pass          http://127.0.0.1:%(port)d;
    proxy_http_version  1.1;
    proxy_set_header    Connection          $connection_upgrade;
    proxy_set_header    Upgrade             $http_upgrade;
    proxy_set_header    Host                $host;
    proxy_set_header    X-Real-IP           $remote_addr;
    proxy_set_header    X-Forwarded-For     $proxy_add_x_forwarded_for;
}
"""
STUDENT_DATA = (".csv", ".xlsx", ".parquet", ".pkl", ".joblib", ".skops", ".db")


def clone_files() -> list[str]:
    """The repository's files as a fresh clone would have them (tracked, plus new files not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=PROJECT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    return sorted(name for name in listed.split("\0") if name and (PROJECT / name).is_file())


def bundled(name: str, patterns: list[str]) -> bool:
    """CodeBuild's artifact patterns: ``dir/**/*`` is every file under dir, any other pattern names files."""
    for pattern in patterns:
        if pattern.endswith("/**/*"):
            if name.startswith(pattern[: -len("**/*")]):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def build_bundle(target: Path) -> Path:
    spec = yaml.safe_load((PROJECT / "buildspec.yml").read_text())["artifacts"]
    assert spec.get("discard-paths") in ("no", False)
    bundle = target / "bundle.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in clone_files():
            if bundled(name, spec["files"]):
                archive.write(PROJECT / name, name)
    return bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("bundle"))


def test_the_bundle_holds_what_the_instance_runs_and_nothing_else(bundle):
    names = zipfile.ZipFile(bundle).namelist()
    for needed in ("Procfile", "requirements.txt", "app.py", "gunicorn.conf.py"):
        assert needed in names, needed
    for folder in ("src/", "templates/", "static/", ".ebextensions/", ".platform/nginx/"):
        assert any(n.startswith(folder) for n in names), folder
    assert ".platform/nginx/nginx.conf" in names
    assert ".platform/nginx/conf.d/elasticbeanstalk/01-request-limits.conf" in names
    assert not [n for n in names if n.startswith((".venv/", "tests/", "bench/", "data/", "artifacts/", "mlruns/"))]
    assert not [n for n in names if n.lower().endswith(STUDENT_DATA)], "no student data, no trained artifact"
    assert not [n for n in names if "champion.json" in n or "/__pycache__/" in n]


def nginx_tree(bundle_dir: Path, prefix: Path, app_port: int, port: int) -> Path:
    """/etc/nginx as the platform leaves it, then the bundle's .platform/nginx over it (what the platform does)."""
    (prefix / "conf.d" / "elasticbeanstalk").mkdir(parents=True)
    (prefix / "conf.d" / "elasticbeanstalk" / "00_application.conf").write_text(
        GENERATED_APPLICATION_CONF % {"port": app_port}
    )
    shutil.copytree(bundle_dir / ".platform" / "nginx", prefix, dirs_exist_ok=True)
    conf = prefix / "nginx.conf"
    text = conf.read_text()
    logs = prefix / "logs"
    logs.mkdir()
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    for old, new in (
        ("user                    nginx;\n", ""),
        ("/var/log/nginx/error.log warn;", f"{logs}/error.log warn;"),
        ("/var/run/nginx.pid;", f"{prefix}/nginx.pid;"),
        ("/var/log/nginx/access.log main;", f"{logs}/access.log main;"),
        ("listen        80 default_server;", f"listen        127.0.0.1:{port} default_server;"),
        ("    server_tokens off;\n", f"    server_tokens off;\n{temp}\n"),
    ):
        assert text.count(old) == 1, f"the bundle's nginx.conf no longer has {old!r}"
        text = text.replace(old, new)
    conf.write_text(text)
    return conf


def nginx_command(conf: Path, *extra: str) -> list[str]:
    return [NGINX, "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "logs" / "startup.log"), *extra]


def cut_after(port: int, first: bytes, then: bytes, every: float, limit: float = 45.0) -> tuple[float, bytes]:
    """Send ``first``, then ``then`` one byte every ``every`` seconds until nginx closes the connection; return how
    long that took and what nginx answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as sock:
        began = time.monotonic()
        sock.sendall(first)
        answer = b""
        sock.settimeout(every)
        for i in range(int(limit / every)):
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                if not then:  # nothing more to send: wait on
                    continue
                try:
                    sock.sendall(then[i % len(then) : i % len(then) + 1])
                except OSError:  # closed while sending: the cut
                    return time.monotonic() - began, answer
                continue
            except OSError:
                return time.monotonic() - began, answer
            if not chunk:
                return time.monotonic() - began, answer
            answer += chunk
    raise AssertionError(f"nginx still held the connection after {limit:.0f} s")


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.mark.server
@pytest.mark.slow
def test_an_elastic_beanstalk_shaped_instance_serves_through_nginx_with_the_bundles_limits(
    bundle, store_dir, trained, tmp_path
):
    if not Path(NGINX).exists():
        unavailable("nginx is not installed (Debian: apt-get install nginx)")
    app_dir = tmp_path / "var" / "app" / "current"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(app_dir)
    [web] = [line for line in (app_dir / "Procfile").read_text().splitlines() if line.startswith("web:")]
    command = shlex.split(web.removeprefix("web:"))
    assert command[0] == "gunicorn"
    # gunicorn and nginx each get a listening socket opened here: gunicorn by --bind fd://N, nginx through its
    # NGINX variable (the inherited sockets of its binary upgrade), reused for the listen directive of that address
    app_listener, listener = listening_socket(), listening_socket()
    # nginx takes inherited sockets as its old master leaves them, non-blocking; a blocking one stalls a worker in
    # accept() whenever the other worker took the connection, and that worker's timers with it
    listener.setblocking(False)
    app_port, port = app_listener.getsockname()[1], listener.getsockname()[1]
    conf = nginx_tree(app_dir, tmp_path / "nginx", app_port, port)
    checked = subprocess.run(nginx_command(conf, "-t"), capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0 and "test is successful" in checked.stderr, checked.stderr

    env = {
        "WEB_CONCURRENCY": "2",
        "ARTIFACTS_DIR": str(store_dir),
        "DRIFT_DIR": str(tmp_path / "drift"),
        "MODEL_REFRESH_SECONDS": "0",
    }
    app_log, nginx_log = tmp_path / "gunicorn.log", tmp_path / "nginx.log"
    app = start(
        [str(BIN / command[0]), *command[1:], *gunicorn_bind(app_listener)],
        env=env,
        cwd=app_dir,
        log=app_log,
        listeners=[app_listener],
    )
    proxy = start(
        nginx_command(conf, "-g", "daemon off;"), env={"NGINX": f"{listener.fileno()};"}, log=nginx_log, listeners=[listener]
    )
    try:
        wait_for(f"http://127.0.0.1:{app_port}/ready", app, log=app_log)
        wait_for(f"http://127.0.0.1:{port}/ready", proxy, log=nginx_log)
        smoke = run_smoke(f"http://127.0.0.1:{port}", wait=30, timeout=120, model_version=trained.manifest["model_version"])
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        assert smoke.stdout.startswith(f"ready with model {trained.manifest['model_version']}; one student predicted")
        access = (conf.parent / "logs" / "access.log").read_text()
        assert "GET /ready" in access and "POST /predictdata" in access  # answered through nginx

        # Plain HTTP at the load balancer: nginx redirects; over HTTPS (and health checks): the app answers.
        status, headers, _ = request(port, "GET", "/model?x=1", {"Host": "scores.example.org", "X-Forwarded-Proto": "http"})
        assert status == 301 and headers["Location"] == "https://scores.example.org/model?x=1"
        status, _, _ = request(port, "GET", "/model", {"X-Forwarded-Proto": "https"})
        assert status == 200

        # A stalled body and trickled headers, at the same time: nginx cuts both at its 10 s, not the platform's 60.
        results: dict[str, tuple[float, bytes]] = {}
        stalled = b"POST /predictdata HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        threads = [
            threading.Thread(target=lambda: results.__setitem__("body", cut_after(port, stalled, b"", every=30.0))),
            threading.Thread(
                target=lambda: results.__setitem__(
                    "headers", cut_after(port, b"GET /ready HTTP/1.1\r\n", b"X-Slow: " + b"a" * 100, every=1.0)
                )
            ),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        body_seconds, body_answer = results["body"]
        header_seconds, _ = results["headers"]
        assert 9 <= body_seconds <= 20, body_seconds
        assert 9 <= header_seconds <= 20, header_seconds
        # nginx closes such a connection without an answer and logs it as 408 (it buffers bodies whole first:
        # proxy_request_buffering, so the app never saw it).
        access = (conf.parent / "logs" / "access.log").read_text()
        assert body_answer == b"" and access.count('"POST /predictdata HTTP/1.1" 408') == 1, access[-2000:]

        # Requests that send data, from one address, beyond the burst: 429 from nginx; pages still answer.
        statuses = [request(port, "POST", "/ready", {"Content-Length": "0"})[0] for _ in range(120)]
        assert 429 in statuses and statuses[0] != 429, statuses
        assert request(port, "GET", "/ready")[0] == 200
    finally:
        stop(proxy)
        stop(app)
    assert not (conf.parent / "nginx.pid").exists(), "nginx stopped and removed its pid file"

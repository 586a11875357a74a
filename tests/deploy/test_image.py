"""The serving image: its Dockerfile read, its command run here, the workflow job that ships it, and the image
itself built and run by a Docker engine.

The image runs gunicorn exactly as the run command and the Procfile do, so that gunicorn.conf.py (the one place
server settings live) governs all three; its command is started here as the image would start it, and the
workflow's smoke test is run against it. Then a Docker engine of the test's own builds the Dockerfile on a local
stand-in for its base image, runs the image with the model store mounted, and the same smoke test passes against it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import unavailable
from tests.servers import BIN, PROJECT, gunicorn_bind, listening_socket, run_smoke, start, stop, wait_for

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
        result = run_smoke(f"http://127.0.0.1:{port}", wait=60, timeout=120, model_version=trained.manifest["model_version"])
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
        result = run_smoke(f"http://127.0.0.1:{port}", wait=8, timeout=60)
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


# The image, built and run by a real Docker engine on this machine. Docker Hub is out of reach here, so the
# Dockerfile's base image (python:3.11-slim) is a local stand-in: Debian bookworm made by debootstrap from
# Debian's packages, with its Python 3.11 and pip, imported and tagged with the base image's name in an engine
# of the test's own (its own socket, data and exec folders), with this machine's CA bundle added (pip reaches
# PyPI through it). What differs from the official image: Python is Debian's (/usr/bin, pip installing into
# /usr/local), not one built from source into /usr/local. The engine builds with its classic builder
# (DOCKER_BUILDKIT=0: no buildx here), the workflow's runner with BuildKit; the Dockerfile uses nothing only one
# of them knows.
#
# Time: debootstrap takes minutes (2 min 40 s on an idle 2-core machine, 10 min on a busy one), so the base's
# tarball is cached outside the clone (~/.cache/student-math/, or $XDG_CACHE_HOME/student-math/) and made again
# only when missing. The engine stores layers with overlay2 (each build step's container is a thin layer over the
# image), in a tmpfs; vfs, where each step's container is a full copy of the image, is the fallback when overlay2
# cannot start, on disk, and far slower (over 30 minutes on a busy machine). With the base cached and overlay2,
# the test takes about 2 minutes, most of it the build's pip, which installs requirements.txt from PyPI every
# run, as the workflow's build does: both debootstrap and the build need the network (Debian's mirror, PyPI).
# The test's warning (EngineNote) says which driver ran and how long each step took.
DEBIAN_MIRROR = "http://deb.debian.org/debian"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BASE_PACKAGES = "python3,python3-pip,python-is-python3,ca-certificates"
STORAGE_DRIVERS = ("overlay2", "vfs")  # the first that starts
DEBOOTSTRAP_SECONDS = 600
BUILD_SECONDS = 480
CONTAINER = "student-math-image-test"  # within the test's own engine: no other container has it
STORE = "/models"  # where the workflow mounts the model store


class EngineNote(UserWarning):
    """What the image test's engine did (its storage driver, where the base came from, how long each step took)."""


def _mount_points_under(folder: Path) -> list[str]:
    """The mount points at or below ``folder`` in this process's mount table, deepest first."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])  # \040 is a space
        if point == str(folder) or point.startswith(f"{folder}/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def unmount_under(folder: Path) -> list[str]:
    """Unmount what a program left mounted at or below ``folder``; the mount points that would not go.

    dockerd leaves its exec root's network namespace mounted (``exec/netns/default``) even after a clean stop, and
    its data root, container layers and debootstrap's /proc and /sys when killed."""
    for _ in range(5):  # a point may hold several mounts stacked
        points = _mount_points_under(folder)
        if not points:
            break
        for point in points:
            done = subprocess.run(["umount", point], capture_output=True, text=True, timeout=60, check=False)
            if done.returncode != 0:  # busy: detach it now, the kernel frees it when its last user goes
                subprocess.run(["umount", "--lazy", point], capture_output=True, text=True, timeout=60, check=False)
    return _mount_points_under(folder)


def remove_tree(folder: Path) -> list[str]:
    """Unmount (the folder itself too, when it is a tmpfs of ``in_memory``), then delete ``folder`` (made by this
    test) only when nothing is mounted in it any more (a bind mount's files are not the test's to delete); the
    mount points left."""
    left = unmount_under(folder)
    if not left:
        shutil.rmtree(folder, ignore_errors=True)
    return left


def in_memory(folder: Path, size: str) -> bool:
    """Mount a tmpfs of at most ``size`` on the empty ``folder``; whether it could (else the folder stays on disk).

    What debootstrap and overlay2 write (about 250 MB and 1 GB of small files) is then gone with one unmount:
    deleting it from this machine's disk took about 30 s per 250 MB."""
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return mounted.returncode == 0


def base_image_name() -> str:
    [base] = [args for name, args in instructions() if name == "FROM"]
    return base


def cached_base(tmp_path: Path) -> tuple[Path, bool]:
    """The stand-in's root file system as a tarball, made by debootstrap once and kept in the user's cache; and
    whether it was there already."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "student-math"
    tarball = cache / "debian-bookworm-python3.11.tar"
    if tarball.is_file():
        return tarball, True
    if shutil.which("debootstrap") is None:
        unavailable(
            "debootstrap is not installed, and the base image's stand-in is made with it (apt-get install debootstrap)"
        )
    scratch = tmp_path / "base"
    scratch.mkdir()
    in_memory(scratch, "2g")
    root = scratch / "rootfs"
    log = tmp_path / "debootstrap.log"
    command = ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(root), DEBIAN_MIRROR]
    try:
        process = start(command, log=log)
        try:
            process.wait(timeout=DEBOOTSTRAP_SECONDS)
        except subprocess.TimeoutExpired:
            pass  # stopped below; its return code then says it did not finish
        finally:
            stop(process, timeout=30)  # debootstrap and what it started (dpkg, wget), by its process group
            left = unmount_under(root)  # /proc and /sys of the new root, when it stopped half way
        assert not left, f"still mounted after debootstrap: {left}"
        assert process.returncode == 0, (
            f"debootstrap exited with {process.returncode} (limit {DEBOOTSTRAP_SECONDS} s)\n"
            + log.read_text(errors="replace")[-3000:]
        )
        # As in the official image, pip installs into the system Python (Debian marks it externally managed).
        (root / "usr" / "lib" / "python3.11" / "EXTERNALLY-MANAGED").unlink(missing_ok=True)
        shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        cache.mkdir(parents=True, exist_ok=True)
        partial = cache / f".{tarball.name}.{os.getpid()}"
        subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True, timeout=600)
        partial.replace(tarball)  # whole or not at all
    finally:
        left = remove_tree(scratch)
    assert not left, f"still mounted after the base was made: {left}"
    return tarball, False


class Engine:
    """A dockerd of the test's own: its socket, data and exec folders in ``folder``, stopped by its PID."""

    def __init__(self, driver: str, log: Path) -> None:
        # A short folder of its own: containerd's socket lives under the exec root, and a Unix socket's path must
        # fit in 108 bytes, which pytest's temporary folders do not leave room for. In memory for overlay2, whose
        # thin layers take about 1 GB here; vfs's full copy of the image per layer stays on disk.
        folder = Path(tempfile.mkdtemp(prefix="sm-docker-", dir="/tmp"))
        self.folder, self.driver, self.log = folder, driver, log
        self.in_memory = driver == "overlay2" and in_memory(folder, "4g")
        self.sock = folder / "docker.sock"
        self.process = start(
            [
                "dockerd",
                f"--storage-driver={driver}",
                "--iptables=false",
                "--bridge=none",
                f"--data-root={folder / 'data'}",
                f"--exec-root={folder / 'exec'}",
                f"--pidfile={folder / 'docker.pid'}",
                f"--host=unix://{self.sock}",
            ],
            log=log,
        )

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """The docker client on this engine (its classic builder: buildx is not installed here)."""
        return subprocess.run(
            ["docker", "-H", f"unix://{self.sock}", *args],
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ready(self, timeout: float = 60) -> bool:
        """Whether the engine answers, with the storage driver asked for, before it exits or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            info = self("info", "--format", "{{.Driver}}", timeout=30)
            if info.returncode == 0:
                assert info.stdout.strip() == self.driver, info.stdout
                return True
            time.sleep(0.5)
        return False

    def close(self) -> list[str]:
        """Stop dockerd by its PID (it stops its containers and the containerd it started), its whole process group
        only if it has not stopped within 60 s; unmount and delete its folder; the mount points left."""
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=60)
        stop(self.process, timeout=30)
        return remove_tree(self.folder)


def why_not_started(log: Path) -> str:
    """dockerd's errors in ``log`` (``failed to start daemon: ...`` and the lines at level error or fatal), or
    the end of the log when it has none."""
    text = log.read_text(errors="replace")
    marks = ("failed to start daemon", "level=error", "level=fatal")
    errors = [line for line in text.splitlines() if any(mark in line for mark in marks)]
    return "\n".join(errors[-3:])[-1500:] if errors else text[-1000:]


@contextlib.contextmanager
def docker_engine(logs: Path) -> Iterator[Engine]:
    """An engine with the first storage driver of STORAGE_DRIVERS that starts; the test skips (and fails under
    REQUIRE_ALL=1), saying why, when none does. Stopped and cleaned up whatever happens."""
    if os.geteuid() != 0:
        unavailable(f"the Docker engine cannot start here: dockerd needs root, and this runs as uid {os.geteuid()}")
    for tool in ("dockerd", "docker"):
        if shutil.which(tool) is None:
            unavailable(f"the Docker engine cannot start here: {tool} is not installed (apt-get install docker.io)")
    failures = []
    for driver in STORAGE_DRIVERS:
        engine = Engine(driver, logs / f"dockerd-{driver}.log")
        try:
            started = engine.ready()
        except BaseException:
            engine.close()
            raise
        if started:
            break
        left = engine.close()
        assert not left, f"still mounted after dockerd stopped: {left}"
        failures.append(f"with {driver}: {why_not_started(engine.log)}")
    else:
        unavailable("the Docker engine cannot start here: " + "\n".join(failures))
    if failures:
        warnings.warn(EngineNote(f"overlay2 did not start, the engine stores layers with vfs: {failures[0]}"), stacklevel=2)
    try:
        yield engine
    finally:
        left = engine.close()
    assert not left, f"still mounted after dockerd stopped: {left}"


def container_port(engine: Engine, name: str, timeout: float = 90) -> int:
    """The port gunicorn listens on in the container (it was given port 0), read from its log."""
    deadline = time.monotonic() + timeout
    while True:
        logs = engine("logs", name)
        found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", logs.stdout + logs.stderr)
        if found:
            return int(found.group(1))
        running = engine("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
        assert running == "true" and time.monotonic() < deadline, (
            f"gunicorn did not listen within {timeout:.0f} s (running: {running})\n" + (logs.stdout + logs.stderr)[-3000:]
        )
        time.sleep(0.5)


# Bounded by its steps' own limits: the base made again (when not cached), the build, then a few minutes to import,
# serve and stop.
@pytest.mark.timeout(DEBOOTSTRAP_SECONDS + BUILD_SECONDS + 300)
def test_the_image_builds_runs_and_passes_the_smoke_test_in_a_docker_engine(store_copy, trained, tmp_path):
    took: dict[str, float] = {}
    began = time.monotonic()
    base, cached = cached_base(tmp_path)
    took["base" if not cached else "base (cached)"] = time.monotonic() - began
    began = time.monotonic()
    with docker_engine(tmp_path) as engine:
        took["engine start"] = time.monotonic() - began
        began = time.monotonic()
        imported = engine("import", str(base), "student-math-debian:bookworm", timeout=300)
        assert imported.returncode == 0, imported.stderr
        # The stand-in trusts what this machine trusts (its CA bundle, which pip needs to reach PyPI from here),
        # then takes the base image's name.
        trust = tmp_path / "trust"
        trust.mkdir()
        shutil.copy(HOST_CA_BUNDLE, trust / "ca-certificates.crt")
        (trust / "pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
        (trust / "Dockerfile").write_text(
            "FROM student-math-debian:bookworm\n"
            "COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n"
            "COPY pip.conf /etc/pip.conf\n"
        )
        tagged = engine("build", "--tag", base_image_name(), str(trust))
        assert tagged.returncode == 0, tagged.stdout[-2000:] + tagged.stderr[-2000:]
        took["import"] = time.monotonic() - began

        began = time.monotonic()
        built = engine("build", "--network", "host", "--tag", "student-math:test", str(PROJECT), timeout=BUILD_SECONDS)
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        took["build"] = time.monotonic() - began

        began = time.monotonic()
        for path in [store_copy, *store_copy.rglob("*")]:  # the image's user (uid 10001) reads the mounted store
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:
            # Port 0: gunicorn takes a port the system gives it, and says which in its log (no port is chosen
            # free here, then taken by another program before gunicorn binds it).
            ran = engine(
                *("run", "--detach", "--name", CONTAINER, "--network", "host"),
                *("--env", "HOST=127.0.0.1", "--env", "PORT=0", "--env", "WEB_CONCURRENCY=2"),
                *("--env", f"ARTIFACTS_DIR={STORE}", "--volume", f"{store_copy}:{STORE}:ro"),
                "student-math:test",
            )
            assert ran.returncode == 0, ran.stderr
            port = container_port(engine, CONTAINER)
            smoke = run_smoke(
                f"http://127.0.0.1:{port}", wait=90, timeout=180, model_version=trained.manifest["model_version"]
            )
            logs = engine("logs", CONTAINER)
            assert smoke.returncode == 0, smoke.stdout + smoke.stderr + logs.stdout[-2000:] + logs.stderr[-2000:]
            assert smoke.stdout.startswith(f"ready with model {trained.manifest['model_version']}; one student predicted ")
            user = engine("exec", CONTAINER, "id", "-u")
            assert user.stdout.strip() == "10001", user.stdout + user.stderr  # not root inside the container
        finally:
            engine("rm", "--force", CONTAINER)  # by its name, whether or not it started
        took["run and smoke test"] = time.monotonic() - began
        began = time.monotonic()
    took["engine stop and clean-up"] = time.monotonic() - began
    steps = ", ".join(f"{step} {seconds:.0f} s" for step, seconds in took.items())
    where = "in memory (tmpfs)" if engine.in_memory else "on disk"
    warnings.warn(EngineNote(f"storage driver {engine.driver}, {where}; {steps}"), stacklevel=1)

"""Slow and hostile clients against the server as scripts/run.sh starts it, and the memory of body bursts.

    python bench/slow_clients.py [--store DIR] [--seconds 60] [--scale 1.0]

Starts the command scripts/run.sh ends with (its gunicorn settings, its default number of workers) on
127.0.0.1, then runs each attack for ``--seconds``, one at a time:

- header tricklers (80): each sends a request's headers one byte every 5 s;
- lingering closers (100): each sends ``GET /health`` with ``Connection: close`` and never reads nor closes;
- slow readers (80): each posts a class list of 10,000 students and reads the CSV answer 4 KB every 5 s;
- stalled bodies (200): each declares a 1,000-byte body, sends a few bytes and stalls.

A connection the server closes is opened again, so the attack holds its number for the whole run. Meanwhile
``/health`` is asked every half second (the slowest answer is printed) and a real class list of 30 students
is posted every 5 s (the slowest answer). Workers killed are the ``WORKER TIMEOUT`` lines of the server's log
and the workers booted after the first ones.

Then two bursts of 64 parallel bodies each: a CSV header of 262,133 bytes (``gender`` and 262,127 commas) and
a class list of 10,000 bad rows (about 140 KB). For each worker: its resident memory at rest, the most it
reached during the burst, and how long after the burst it came back within 50 MB of rest (60 s at most).

The baseline is the same server with nobody attacking it: ``/health`` and the class list before the attacks.
``--scale`` multiplies the numbers of connections (tests run a small scale). Linux only (it reads /proc).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serving import STUDENT, free_port, store_or_train  # noqa: E402
from src.schema import FEATURE_NAMES, STUDENT_ID  # noqa: E402

BIN = Path(sys.executable).parent
MB = 1024 * 1024


def run_sh_command() -> list[str]:
    """The gunicorn command scripts/run.sh ends with, with this environment's gunicorn."""
    line = next(line for line in (ROOT / "scripts" / "run.sh").read_text().splitlines() if line.startswith("exec "))
    argv = shlex.split(line.removeprefix("exec "))
    return [str(BIN / "gunicorn"), *argv[1:]]


def class_list(students: int, bad: bool = False) -> bytes:
    """A class list CSV of ``students`` rows: the sample student, or a row of bad cells (``x`` everywhere)."""
    header = ",".join([STUDENT_ID, *FEATURE_NAMES])
    row = ",".join("x" for _ in range(len(FEATURE_NAMES) + 1)) if bad else None
    rows = [row or ",".join([f"s{i}", *(str(STUDENT[name]) for name in FEATURE_NAMES)]) for i in range(students)]
    return ("\n".join([header, *rows]) + "\n").encode()


COMMA_HEADER = b"gender" + b"," * 262_127  # 262,133 bytes: a header of 262,128 cells


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return sorted(int(pid) for pid in children)

    def killed(self, booted_at_start: int) -> int:
        text = self.log.read_text(errors="replace")
        return max(text.count("WORKER TIMEOUT"), text.count("Booting worker") - booted_at_start)


def start(store: Path, workdir: Path, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    log = workdir / f"server-{port}.log"
    full_env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "ARTIFACTS_DIR": str(store),
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="metrics-", dir=workdir),
        **(env or {}),
    }
    full_env.pop("WEB_CONCURRENCY", None)  # scripts/run.sh's default: gunicorn.conf.py's
    with open(log, "wb") as out:
        process = subprocess.Popen(
            run_sh_command(), cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(process, port, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{server.url}/ready", timeout=2).status_code == 200:
                return server
        time.sleep(0.3)
    stop(server)
    raise TimeoutError("the server was not ready within 120 s")


def stop(server: Server) -> None:
    try:
        os.killpg(server.process.pid, signal.SIGTERM)
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=30)
    except ProcessLookupError:
        pass


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# ---- attackers: each holds one connection at a time until ``until``, opening a new one when it is closed


def _connect(port: int, small_buffer: bool = False) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if small_buffer:  # so that the server's answer waits on this client, not in the kernel's buffers
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed the connection (without waiting)."""
    try:
        sock.setblocking(False)
        return sock.recv(65536, socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
    finally:
        with contextlib.suppress(OSError):
            sock.setblocking(True)


def header_trickler(port: int, until: float, stop_event: threading.Event, gap: float = 5.0) -> None:
    text = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Trickle: " + b"a" * 4096
    while time.monotonic() < until and not stop_event.is_set():
        with contextlib.suppress(OSError), _connect(port) as sock:
            for byte in text:
                sock.sendall(bytes([byte]))
                if stop_event.wait(gap) or time.monotonic() >= until or _closed(sock):
                    break
        stop_event.wait(0.2)


def lingering_closer(port: int, until: float, stop_event: threading.Event) -> None:
    while time.monotonic() < until and not stop_event.is_set():
        with contextlib.suppress(OSError), _connect(port, small_buffer=True) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            while time.monotonic() < until and not stop_event.wait(1.0):
                if _closed(sock):
                    break
        stop_event.wait(0.2)


def slow_reader(port: int, until: float, stop_event: threading.Event, body: bytes, gap: float = 5.0) -> None:
    head = (
        b"POST /predictdata HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\nAccept: text/csv\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    while time.monotonic() < until and not stop_event.is_set():
        with contextlib.suppress(OSError), _connect(port, small_buffer=True) as sock:
            sock.sendall(head + body)
            while time.monotonic() < until and not stop_event.is_set():
                if sock.recv(4096) == b"":
                    break
                stop_event.wait(gap)
        stop_event.wait(0.2)


def stalled_body(port: int, until: float, stop_event: threading.Event) -> None:
    while time.monotonic() < until and not stop_event.is_set():
        with contextlib.suppress(OSError), _connect(port) as sock:
            sock.sendall(
                b"POST /predictdata HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"gender": '
            )
            while time.monotonic() < until and not stop_event.wait(1.0):
                if _closed(sock):
                    break
        stop_event.wait(0.2)


ATTACKS: dict[str, tuple[int, Callable[..., None]]] = {
    "header tricklers": (80, header_trickler),
    "lingering closers": (100, lingering_closer),
    "slow readers of 10k-row answers": (80, slow_reader),
    "stalled bodies": (200, stalled_body),
}


@dataclass
class Probe:
    """``/health`` every half second and a 30-student class list every 5 s, with their slowest times."""

    url: str
    health: list[float] = field(default_factory=list)
    classes: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def run(self, until: float) -> None:
        body = class_list(30)
        next_class = time.monotonic()
        while time.monotonic() < until:
            self.health.append(self._timed(lambda: requests.get(f"{self.url}/health", timeout=30), "health"))
            if time.monotonic() >= next_class:
                post = lambda: requests.post(  # noqa: E731
                    f"{self.url}/predictdata", data=body, headers={"Content-Type": "text/csv"}, timeout=30
                )
                self.classes.append(self._timed(post, "class list"))
                next_class += 5
            time.sleep(0.5)

    def _timed(self, call: Callable[[], requests.Response], what: str) -> float:
        started = time.monotonic()
        try:
            status = call().status_code
            if status != 200:
                self.failures.append(f"{what}: {status}")
        except requests.RequestException as err:
            self.failures.append(f"{what}: {type(err).__name__}")
            return float("inf")
        return time.monotonic() - started


@dataclass(frozen=True)
class AttackResult:
    name: str
    connections: int
    health_max: float
    class_max: float
    killed: int
    failures: tuple[str, ...]


def run_attack(server: Server, name: str, connections: int, seconds: float) -> AttackResult:
    attacker = ATTACKS[name][1]
    booted = server.log.read_text(errors="replace").count("Booting worker")
    until = time.monotonic() + seconds
    stop_event = threading.Event()
    extra = (class_list(10_000),) if attacker is slow_reader else ()
    threads = [
        threading.Thread(target=attacker, args=(server.port, until, stop_event, *extra), daemon=True)
        for _ in range(connections)
    ]
    for thread in threads:
        thread.start()
    probe = Probe(server.url)
    try:
        time.sleep(min(2.0, seconds / 4))  # the attackers connect first
        probe.run(until)
    finally:
        stop_event.set()
        for thread in threads:
            thread.join(30)
    return AttackResult(
        name,
        connections,
        max(probe.health, default=float("nan")),
        max(probe.classes, default=float("nan")),
        server.killed(booted),
        tuple(probe.failures),
    )


@dataclass(frozen=True)
class BurstResult:
    name: str
    rest: dict[int, int]
    peak: dict[int, int]
    back_after: dict[int, float]  # seconds after the burst until within 50 MB of rest (inf: not within the wait)
    statuses: dict[int, int]

    @property
    def worst_growth(self) -> int:
        return max(self.peak[pid] - self.rest[pid] for pid in self.rest)


def run_burst(server: Server, name: str, body: bytes, parallel: int, wait: float = 60.0) -> BurstResult:
    pids = server.workers()
    rest = {pid: rss(pid) for pid in pids}
    peak = dict(rest)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in pids:
                with contextlib.suppress(OSError):
                    peak[pid] = max(peak[pid], rss(pid))
            time.sleep(0.05)

    def post(_: int) -> int:
        try:
            return requests.post(
                f"{server.url}/predictdata", data=body, headers={"Content-Type": "text/csv"}, timeout=120
            ).status_code
        except requests.RequestException:
            return 0

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with ThreadPoolExecutor(parallel) as pool:
        statuses: dict[int, int] = {}
        for status in pool.map(post, range(parallel)):
            statuses[status] = statuses.get(status, 0) + 1
    done.set()
    sampler.join(5)
    ended = time.monotonic()
    back_after = dict.fromkeys(pids, float("inf"))
    while time.monotonic() < ended + wait and any(v == float("inf") for v in back_after.values()):
        for pid in pids:
            if back_after[pid] == float("inf") and rss(pid) <= rest[pid] + 50 * MB:
                back_after[pid] = time.monotonic() - ended
        time.sleep(0.25)
    return BurstResult(name, rest, peak, back_after, statuses)


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--store", type=Path, help="a model store (default: train one on the synthetic cohort)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each attack")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every number of connections")
    parser.add_argument("--bursts", type=int, default=64, help="parallel bodies in each memory burst")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="slow-clients-") as tmp:
        workdir = Path(tmp)
        store = store_or_train(args.store, workdir)
        server = start(store, workdir)
        try:
            print(f"server: {' '.join(run_sh_command()[1:])} ({len(server.workers())} workers); {load_note()}")
            calm = Probe(server.url)
            calm.run(time.monotonic() + 6)
            print(
                f"baseline (no attack): /health max {max(calm.health) * 1000:.0f} ms, "
                f"30-student class list max {max(calm.classes) * 1000:.0f} ms"
            )
            print(f"{'attack':<34} {'conns':>5} {'/health max':>12} {'class list max':>15} {'killed':>7}")
            for name, (count, _) in ATTACKS.items():
                result = run_attack(server, name, max(1, round(count * args.scale)), args.seconds)
                print(
                    f"{name:<34} {result.connections:>5} {result.health_max * 1000:>9.0f} ms "
                    f"{result.class_max * 1000:>12.0f} ms {result.killed:>7}"
                    + (f"  failures: {sorted(set(result.failures))}" if result.failures else "")
                )
            print(load_note())
            bursts = {
                f"{args.bursts} x 262 KB comma-only CSV header": COMMA_HEADER,
                f"{args.bursts} x 140 KB class list of bad rows": class_list(10_000, bad=True),
            }
            for name, body in bursts.items():
                burst = run_burst(server, name, body, args.bursts)
                print(f"{name}: answers {burst.statuses}")
                for pid in sorted(burst.rest):
                    growth = (burst.peak[pid] - burst.rest[pid]) / MB
                    print(
                        f"  worker {pid}: rest {burst.rest[pid] / MB:.0f} MB, peak +{growth:.0f} MB, "
                        f"back within 50 MB after {burst.back_after[pid]:.1f} s"
                    )
            text = server.log.read_text(errors="replace")
            print(f"server log: {len(re.findall('Traceback', text))} tracebacks; {load_note()}")
        finally:
            stop(server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

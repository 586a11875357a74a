"""What a hostile body costs a worker in memory: the worst case over several shapes, each up to MAX_CONTENT_LENGTH.

    python bench/body_memory.py [--store DIR] [--limit-mb 200]

Starts the app as scripts/run.sh does (gunicorn.conf.py) with one worker on 127.0.0.1, then for each shape:
resets the worker's peak memory (``/proc/<pid>/clear_refs``), reads its resident memory at rest, sends the body,
and reads the peak (``VmHWM``). Prints the status, seconds and peak above rest per shape, and the worst case.
The baseline in the same run is a valid batch of MAX_BATCH students, the largest body the API accepts whole.
Linux only (it reads /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serving import STUDENT, free_port, store_or_train  # noqa: E402
from src.config import AppConfig  # noqa: E402
from src.schema import FEATURE_NAMES  # noqa: E402

LIMIT = AppConfig().max_content_length
JSON = "application/json"


def fill(unit: bytes, head: bytes = b"", tail: bytes = b"") -> bytes:
    """``head`` + as many ``unit`` as fit + ``tail``, within the byte limit."""
    count = (LIMIT - len(head) - len(tail)) // len(unit)
    return head + unit * count + tail


def shapes() -> dict[str, tuple[str, Callable[[], bytes]]]:
    student = json.dumps(STUDENT).encode()
    header = ",".join(FEATURE_NAMES).encode()
    row = b",".join(str(v).encode() for v in STUDENT.values())
    return {
        "valid batch of MAX_BATCH students (baseline)": (
            JSON,
            lambda: b'{"instances": [' + b", ".join([student] * AppConfig().max_batch) + b"]}",
        ),
        "one string full of [": (JSON, lambda: fill(b"[", b'"', b'"')),
        "array of empty objects": (JSON, lambda: fill(b"{},", b"[", b"{}]")),
        "array of empty arrays": (JSON, lambda: fill(b"[],", b"[", b"[]]")),
        "array of zeros": (JSON, lambda: fill(b"0,", b"[", b"0]")),
        "array of short strings": (JSON, lambda: fill(b'"ab",', b"[", b'"ab"]')),
        "array of floats": (JSON, lambda: fill(b"1.5,", b"[", b"1.5]")),
        "batch of empty students": (JSON, lambda: fill(b"{},", b'{"instances": [', b"{}]}")),
        "student with unknown keys": (
            JSON,
            lambda: b"{" + b",".join(b'"k%07d":0' % i for i in range((LIMIT - 2) // 13)) + b"}",
        ),
        "student with a huge gender": (JSON, lambda: fill(b"x", b'{"gender": "', b'"}')),
        "escaped non-ASCII text": (JSON, lambda: fill(b"\\ud83d\\ude00", b'["', b'"]')),
        "nested [[[[": (JSON, lambda: fill(b"[")),
        "CSV of one wide header": ("text/csv", lambda: fill(b"a,")),
        "CSV of many short rows": ("text/csv", lambda: fill(b"a,b\n", header + b"\n")),
        "CSV of valid rows": ("text/csv", lambda: fill(row + b"\n", header + b"\n")),
        "CSV of blank lines": ("text/csv", lambda: fill(b"\n", header + b"\n" + row + b"\n")),
        "form of many fields": ("application/x-www-form-urlencoded", lambda: fill(b"a=&")),
        "multipart of many parts": (
            "multipart/form-data; boundary=b",
            lambda: fill(b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n\r\n', b"", b"--b--\r\n"),
        ),
    }


def status_memory(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    if len(children) != 1:
        sys.exit(f"expected one worker, found {children}")
    return int(children[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, help="a local model store (default: train one into a temp folder)")
    parser.add_argument("--limit-mb", type=float, default=200.0, help="the most a body may cost (exit 1 beyond)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-body-memory-"))
    store = store_or_train(args.store, workdir)
    port = free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "ARTIFACTS_DIR": str(store),
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(dir=workdir),
        "LOG_LEVEL": "WARNING",
    }
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    master = subprocess.Popen(
        [gunicorn, "-c", "gunicorn.conf.py", "app:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.post(f"{url}/predictdata", json=STUDENT, timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        else:
            sys.exit("the server did not answer within 120 s")
        pid = worker_pid(master.pid)
        print(f"one worker (pid {pid}), MAX_CONTENT_LENGTH {LIMIT} bytes; peak resident memory above rest:")
        print(f"{'body':<46} {'bytes':>9} {'status':>6} {'seconds':>8} {'MB above rest':>14}")
        worst = ("", 0.0)
        for name, (content_type, make) in shapes().items():
            body = make()
            rest = status_memory(pid)["VmRSS"]
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak starts again from now
            started = time.monotonic()
            try:
                status = str(
                    requests.post(
                        f"{url}/predictdata", data=body, timeout=120, headers={"Content-Type": content_type}
                    ).status_code
                )
            except (OSError, requests.RequestException) as err:
                status = type(err).__name__
            seconds = time.monotonic() - started
            above = (status_memory(pid)["VmHWM"] - rest) / 1e6
            print(f"{name:<46} {len(body):>9} {status:>6} {seconds:>8.2f} {above:>14.1f}", flush=True)
            if not name.endswith("(baseline)") and above > worst[1]:
                worst = (name, above)
            if worker_pid(master.pid) != pid:
                sys.exit(f"the worker died on: {name}")
        print(f"\nworst hostile body: {worst[0]}, {worst[1]:.1f} MB above rest (limit {args.limit_mb:.0f} MB)")
    finally:
        try:
            os.killpg(master.pid, signal.SIGTERM)
            master.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(master.pid, signal.SIGKILL)
    return 0 if worst[1] < args.limit_mb else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Cross-validation's workers end with a killed training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import PROJECT


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


PARALLEL = """
import time
from joblib import Parallel, delayed
from src.lifecycle.workers import workers_die_with_this_process
with workers_die_with_this_process():
    Parallel(n_jobs=2)(delayed(time.sleep)(60) for _ in range(2))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_cross_validation_workers_end_with_a_killed_training():
    training = subprocess.Popen([sys.executable, "-c", PARALLEL], cwd=PROJECT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        while time.monotonic() < deadline and len(workers) < 2:
            workers = {
                pid
                for pid in _children(training.pid)
                if "loky" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            }
            time.sleep(0.2)
        assert len(workers) >= 2, "the workers did not start"
        training.send_signal(signal.SIGKILL)
        training.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers), workers
    finally:
        for pid in _children(training.pid) | {training.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

"""A killed training's folder of student records is removed by the next run; a live run's is kept."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from src.lifecycle.training import RUN_LOCK, remove_abandoned_runs

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


def _held_run(runs: Path, name: str) -> subprocess.Popen:
    folder = runs / name
    folder.mkdir(parents=True)
    (folder / "train.csv").write_text("gender,math_score\nfemale,72\n")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder / RUN_LOCK)], stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
    return holder


def test_a_killed_runs_folder_is_removed_and_a_live_runs_folder_kept(tmp_path):
    runs = tmp_path / "training-runs"
    killed = _held_run(runs, ".run-4242-0123abcd")
    live = _held_run(runs, ".run-4343-89abcdef")
    (runs / "20261123T101500Z-1a2b3c4d").mkdir()  # a finished run's records: not for this function
    (runs / ".run-notmine").mkdir()
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=10)
        assert remove_abandoned_runs(runs) == [runs / ".run-4242-0123abcd"]
        assert sorted(p.name for p in runs.iterdir()) == [".run-4343-89abcdef", ".run-notmine", "20261123T101500Z-1a2b3c4d"]
    finally:
        live.kill()
        live.wait(timeout=10)
    assert remove_abandoned_runs(runs) == [runs / ".run-4343-89abcdef"]

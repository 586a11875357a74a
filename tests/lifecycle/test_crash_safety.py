"""kill -9 of training at many moments never leaves a pointer to an incomplete or unverifiable set.

Each training is a process of its own, killed with SIGKILL. They are forked from one server process that has
imported the training command once (multiprocessing's ``forkserver``), so each run spends its time training and
writing, where the kills matter, rather than importing the libraries again.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import sys
import time

import pytest

from src.answers.model import load_champion
from src.config import AppConfig
from src.pipeline.train_pipeline import main
from src.store import LocalStore


def _ready() -> None:
    """Nothing: the first process forked makes the server start."""


def _train(argv: list[str]) -> None:
    """The training command in a forked process, silent, exiting with the command's status."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.exit(main(argv))


RUNS = 20
OPTIONS = [
    "--no-tracking",
    "--synthetic-rows",
    "300",
    "--cv-folds",
    "3",
    "--models",
    "ridge",
    "--n-jobs",
    "1",
    "--champion-tolerance",
    "1.0",
]


@pytest.mark.timeout(900)
def test_kill_9_at_twenty_moments_never_breaks_the_pointer_and_the_app_keeps_serving(store_copy, tmp_path, student):
    from app import create_app
    from src.web.services import EXTENSION

    store = LocalStore(store_copy)
    app = create_app(AppConfig(artifacts_dir=store_copy, drift_dir=tmp_path / "drift"))
    slot, client = app.extensions[EXTENSION].slot, app.test_client()

    forks = multiprocessing.get_context("forkserver")
    forks.set_forkserver_preload([__name__])  # the training command, imported once

    def training(seed: int) -> multiprocessing.Process:
        argv = [*OPTIONS, "--store", str(store_copy), "--seed", str(seed), "--runs-dir", str(tmp_path / "runs")]
        process = forks.Process(target=_train, args=(argv,))
        process.start()
        return process

    ready = forks.Process(target=_ready)  # the server starts and imports the command, untimed
    ready.start()
    ready.join(timeout=120)
    started = time.monotonic()
    first = training(1000)
    first.join(timeout=120)
    assert first.exitcode == 0
    duration = time.monotonic() - started
    rng = random.Random(7)
    moments = sorted(duration * (0.05 + 1.1 * (i + rng.random()) / RUNS) for i in range(RUNS))  # some after the end
    moments[-1] = 2.5 * duration  # one run surely finishes and promotes, however runs' lengths vary on a busy machine
    assert len(set(moments)) == RUNS
    seen: set[str] = set()
    finished = 0
    for i, moment in enumerate(moments):
        process = training(i)
        time.sleep(moment)
        if process.is_alive():
            os.kill(process.pid, signal.SIGKILL)
        else:
            finished += 1
        process.join(timeout=30)
        assert process.exitcode is not None, "a training outlived its kill"
        pointer = json.loads((store_copy / "champion.json").read_text())
        pipeline = load_champion(store)  # raises unless the pointer names a complete, verified set
        assert pipeline.model_version == pointer["model_version"]
        seen.add(pointer["model_version"])
        slot.refresh()
        answer = client.post("/predictdata", json=student)
        assert answer.status_code == 200 and answer.get_json()["model_version"] == pointer["model_version"]
    assert not list(store_copy.glob("*/.staging-*")), "staging folders never sit inside a version"
    print(
        f"{RUNS} kills between {moments[0]:.2f} s and {moments[-1]:.2f} s of a {duration:.2f} s training; "
        f"{finished} runs had finished, {len(seen)} champions seen, every pointer verified"
    )
    assert len(seen) >= 2, "some kills must land after a promotion for the test to mean anything"

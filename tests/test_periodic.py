"""Background work in each worker: started once per process, again in a forked child, never twice."""

from __future__ import annotations

import gc
import os
import select
import threading
import time

import pytest

from src.periodic import Periodic


def test_started_once_in_a_process_and_again_in_a_forked_child():
    ran = threading.Event()
    periodic = Periodic([ran.set], 0.02, name="test-periodic")
    periodic.ensure_started()
    periodic.ensure_started()
    assert ran.wait(2)
    assert [t.name for t in threading.enumerate()].count("test-periodic") == 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread did not come along, ensure_started must start one
        try:
            ran.clear()
            periodic.ensure_started()
            os.write(write, b"1" if ran.wait(2) else b"0")
        finally:
            os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 5)
        assert ready and os.read(read, 1) == b"1"
    finally:
        os.waitpid(pid, 0)
        os.close(read)
    time.sleep(0.05)
    assert [t.name for t in threading.enumerate()].count("test-periodic") == 1  # the parent's is unchanged


def test_the_thread_ends_once_nothing_keeps_its_periodic():
    ran = threading.Event()
    periodic = Periodic([ran.set], 0.02, name="test-periodic-dropped")
    periodic.ensure_started()
    assert ran.wait(2)
    del periodic
    gc.collect()
    deadline = time.monotonic() + 5
    while "test-periodic-dropped" in {t.name for t in threading.enumerate()} and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "test-periodic-dropped" not in {t.name for t in threading.enumerate()}


@pytest.mark.slow
def test_apps_made_and_dropped_leave_no_background_thread(app_config, student):
    """Five apps, each flushing its metrics at exit, made, used and dropped: none of their threads stays."""
    from app import create_app

    def flushers() -> int:
        return sum(t.name == "monitoring-flusher" for t in threading.enumerate())

    before = flushers()
    for _ in range(5):
        app = create_app(app_config)
        assert app.test_client().post("/predictdata", json=student).status_code == 200  # starts its flusher
        del app
    gc.collect()
    deadline = time.monotonic() + 5
    while flushers() > before and time.monotonic() < deadline:
        time.sleep(0.05)
        gc.collect()
    assert flushers() == before


def test_a_periodic_flushing_at_exit_is_not_kept_by_its_exit_hook():
    import weakref

    periodic = Periodic([], 0.02, name="test-periodic-exit", run_at_exit=True)
    periodic.ensure_started()
    reference = weakref.ref(periodic)
    del periodic
    gc.collect()
    assert reference() is None

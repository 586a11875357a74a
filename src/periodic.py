"""Work a process repeats in the background: flushing buffered monitoring, checking for a new model.

Each gunicorn worker is a separate process and a thread does not survive a fork, so ``ensure_started`` starts
the thread in whichever process first needs it: under gunicorn as each worker boots (``start_app_background``),
under any other server at the first request. It is called on every request too, so it reads one flag, which a
fork resets in the child (``os.register_at_fork``), rather than asking the system for the process id.
``run_now`` runs the callbacks at once (``/metrics`` does, before it answers); with ``run_at_exit`` they run
once more when the process exits, so buffered values are not lost. Neither the thread nor the exit hook keeps a
Periodic alive (both hold it weakly): when the app that kept it is gone, its thread ends after its next sleep
instead of running the callbacks of a discarded app for the life of the process.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
BACKGROUND = "student_math.background"  # a Flask app's extensions key: its Periodic work


def start_app_background(app: object) -> None:
    """Start the background work an app keeps under ``BACKGROUND`` now (nothing for any other WSGI app).

    gunicorn's ``post_worker_init`` calls it in each worker as it boots, so that a worker that has not answered a
    request yet keeps its model fresh all the same, rather than first answering with the model it booted with;
    under any other server the work starts at the first request."""
    for periodic in getattr(app, "extensions", {}).get(BACKGROUND, ()):
        periodic.ensure_started()


class Buffer(Generic[T]):
    """Items gathered on the request path, taken all at once by a Periodic callback (thread-safe)."""

    def __init__(self) -> None:
        self._items: list[T] = []
        self._lock = threading.Lock()

    def add(self, item: T) -> None:
        with self._lock:
            self._items.append(item)

    def drain(self) -> list[T]:
        with self._lock:
            items, self._items = self._items, []
        return items


class Periodic:
    def __init__(
        self, callbacks: Sequence[Callable[[], object]], seconds: float, *, name: str, run_at_exit: bool = False
    ) -> None:
        self.callbacks = list(callbacks)
        self.seconds = seconds
        self.name = name
        self.run_at_exit = run_at_exit
        self._started = False
        self._lock = threading.Lock()
        reference = weakref.ref(self)  # the fork hook cannot be removed: it must not keep this object alive
        os.register_at_fork(after_in_child=lambda: _forget_thread(reference))

    def ensure_started(self) -> None:
        if self._started:
            return
        with self._lock:
            if self._started:
                return
            threading.Thread(target=_repeat, args=(weakref.ref(self), self.seconds), name=self.name, daemon=True).start()
            self._started = True
            if self.run_at_exit:
                _run_at_exit(self)

    def run_now(self) -> None:
        for callback in self.callbacks:
            try:
                callback()
            except Exception:  # background work must never take a worker down
                logger.exception("%s failed in %s", self.name, getattr(callback, "__qualname__", callback))

    def _after_fork(self) -> None:
        self._started = False  # the parent's thread did not come along
        self._lock = threading.Lock()  # nor may a lock it held


def _repeat(reference: weakref.ref[Periodic], seconds: float) -> None:
    """Run a Periodic's callbacks every ``seconds`` for as long as something (its app) keeps the Periodic."""
    while True:
        time.sleep(seconds)
        periodic = reference()
        if periodic is None:
            return
        periodic.run_now()
        del periodic  # between runs only the weak reference is held


_AT_EXIT: weakref.WeakSet[Periodic] = weakref.WeakSet()
_AT_EXIT_LOCK = threading.Lock()


def _run_at_exit(periodic: Periodic) -> None:
    """Run ``periodic`` once more when the process exits, if something still keeps it then.

    Held weakly: ``atexit.register(periodic.run_now)`` would keep every app's Periodic, and so its thread, alive
    for the life of the process."""
    with _AT_EXIT_LOCK:
        if not _AT_EXIT:  # one hook for the process, registered again only if it ran already (harmless)
            atexit.unregister(_exit_runs)
            atexit.register(_exit_runs)
        _AT_EXIT.add(periodic)


def _exit_runs() -> None:
    for periodic in list(_AT_EXIT):
        periodic.run_now()


def _forget_thread(reference: weakref.ref[Periodic]) -> None:
    periodic = reference()
    if periodic is not None:
        periodic._after_fork()

"""A per-process background flusher: buffered metric and drift updates leave the request path.

Each gunicorn worker is a separate process; a thread does not survive a fork, so ``ensure_started`` (a pid
comparison, cheap enough for every request) starts one in whichever process first needs it. Callbacks also
run at exit, and anyone may call ``flush_now`` (``/metrics`` and ``/drift`` do, before they answer).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)


class Flusher:
    def __init__(self, callbacks: Sequence[Callable[[], None]], seconds: float = 1.0) -> None:
        self.callbacks = list(callbacks)
        self.seconds = seconds
        self._pid = 0
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            threading.Thread(target=self._loop, name="monitoring-flusher", daemon=True).start()
            atexit.register(self.flush_now)

    def flush_now(self) -> None:
        for callback in self.callbacks:
            try:
                callback()
            except Exception:  # a monitoring failure must never take a worker down
                logger.exception("monitoring flush failed in %s", getattr(callback, "__qualname__", callback))

    def _loop(self) -> None:
        while True:
            time.sleep(self.seconds)
            self.flush_now()

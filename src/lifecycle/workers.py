"""Cross-validation's worker processes end with the training that started them, even after a kill -9.

joblib's loky workers otherwise wait five minutes for more work before they exit: about 500 MB that a killed
training leaves running. Each worker asks the kernel for a signal when its parent dies (Linux's
``PR_SET_PDEATHSIG``) as it starts. This module imports nothing heavy: a worker imports it before its first task.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterator

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """In a worker: be killed when the parent dies (Linux); exit now if it has died already."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


@contextlib.contextmanager
def workers_die_with_this_process() -> Iterator[None]:
    """joblib's process workers started inside this block end when this process ends, however it ends."""
    import joblib

    with joblib.parallel_config(backend="loky", initializer=die_with_parent, initargs=(os.getpid(),)):
        yield

"""The app's one model: a PredictPipeline swapped whole, never mutated, with the reason when there is none.

What the slot says in public (``error``, ``last_error``: /ready, 503 answers, the pages) names the store
``<store>`` and no file system path nor system error text; the server's log has them, for its operators.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from src.answers.model import PredictPipeline
from src.storage import ArtifactError, DataSourceError, is_s3

logger = logging.getLogger(__name__)

Loader = Callable[[], PredictPipeline]


@dataclass(frozen=True)
class LoadOutcome:
    ok: bool
    message: str
    seconds: float


class ModelSlot:
    """Holds the current PredictPipeline. A failed (re)load keeps the model being served, if any."""

    def __init__(
        self,
        loader: Loader,
        source: str,
        probe: Callable[[], str] | None = None,
        decisions: Callable[[], list[dict]] | None = None,
    ) -> None:
        self._loader = loader
        self._probe = probe
        self._decisions = decisions
        self.source = source
        self.last_error: str | None = None
        self.pipeline: PredictPipeline | None = None
        self.error: str | None = "no model loaded yet"
        self.loaded_at: float | None = None
        self._lock = threading.Lock()
        self.listeners: list[Callable[[PredictPipeline], None]] = []

    def load(self) -> LoadOutcome:
        started = time.perf_counter()
        with self._lock:
            try:
                pipeline = self._loader()
            except (ArtifactError, DataSourceError, OSError, ValueError) as err:
                logger.error("model from %s not loaded: %s", self.source, err)
                message = f"model not loaded: {self.public(err)}"
                if self.pipeline is None:
                    self.error = message
                else:
                    message += f"; still serving {self.pipeline.model_version}"
                self.last_error = message
                return LoadOutcome(False, message, time.perf_counter() - started)
            self.pipeline = pipeline  # one reference assignment: requests see the old or the new model
            self.error = None
            self.last_error = None
            self.loaded_at = time.time()
        for listener in self.listeners:
            listener(pipeline)
        return LoadOutcome(True, f"loaded {pipeline.model_version}", time.perf_counter() - started)

    def decisions(self) -> list[dict]:
        """The store's latest decisions (promoted, kept, rollback ... with reasons), [] if they cannot be read."""
        if self._decisions is None:
            return []
        try:
            return self._decisions()
        except (ArtifactError, DataSourceError, OSError, ValueError) as err:
            logger.warning("cannot read the decisions of %s: %s", self.source, err)
            return []

    def refresh(self) -> LoadOutcome | None:
        """Load again if the source now names another model version (or nothing is loaded yet)."""
        if self.pipeline is not None and self._probe is not None:
            try:
                current = self._probe() == self.pipeline.model_version
            except (ArtifactError, DataSourceError, OSError, ValueError) as err:
                logger.warning("cannot check %s for a new model: %s", self.source, err)
                self.last_error = f"cannot check the store for a new model: {self.public(err)}"
                return None
            if current:
                self.last_error = None  # the store names the served model again: what went wrong is over
                return None
        return self.load()

    @property
    def public_source(self) -> str:
        """Where the model comes from, fit for anyone: an S3 store's URI, a local store's folder name only."""
        if is_s3(self.source):
            return self.source
        return f"local folder {Path(self.source).name}"

    def public(self, err: BaseException) -> str:
        """``err`` in words fit for anyone: the store named ``<store>``, no path, no system error text."""
        if isinstance(err, OSError) and not isinstance(err, (ArtifactError, DataSourceError)):
            return f"the store cannot be read ({_OS_ERRORS.get(type(err), 'input/output error')})"
        text = str(err).replace(self.source, "<store>")
        return _ABSOLUTE_PATH.sub("<path>", text)


# An absolute local path left in a message (a cache folder, a file): not for the public.
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.<])/[^\s'\",;]+")
_OS_ERRORS: dict[type, str] = {
    PermissionError: "permission denied",
    FileNotFoundError: "a file is missing",
    IsADirectoryError: "a folder stands where a file should",
    NotADirectoryError: "a file stands where a folder should",
    TimeoutError: "timed out",
}

"""The app's one model: a PredictPipeline swapped whole, never mutated, with the reason when there is none."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from src.answers.model import PredictPipeline
from src.storage import ArtifactError, DataSourceError

logger = logging.getLogger(__name__)

Loader = Callable[[], PredictPipeline]


@dataclass(frozen=True)
class LoadOutcome:
    ok: bool
    message: str
    seconds: float


class ModelSlot:
    """Holds the current PredictPipeline. A failed (re)load keeps the model being served, if any."""

    def __init__(self, loader: Loader, source: str, probe: Callable[[], str] | None = None,
                 decisions: Callable[[], list[dict]] | None = None) -> None:
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
                message = f"model from {self.source} not loaded: {err}"
                if self.pipeline is None:
                    self.error = message
                else:
                    message += f"; still serving {self.pipeline.model_version}"
                self.last_error = message
                logger.error("%s", message)
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
                if self._probe() == self.pipeline.model_version:
                    return None
            except (ArtifactError, DataSourceError, OSError, ValueError) as err:
                self.last_error = f"cannot check {self.source} for a new model: {err}"
                logger.warning("%s", self.last_error)
                return None
        return self.load()

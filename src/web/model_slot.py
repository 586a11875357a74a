"""The app's one model: a PredictPipeline swapped whole, never mutated, with the reason when there is none."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from src.pipeline.predict_pipeline import PredictPipeline
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

    def __init__(self, loader: Loader, source: str) -> None:
        self._loader = loader
        self.source = source
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
                logger.error("%s", message)
                return LoadOutcome(False, message, time.perf_counter() - started)
            self.pipeline = pipeline  # one reference assignment: requests see the old or the new model
            self.error = None
            self.loaded_at = time.time()
        for listener in self.listeners:
            listener(pipeline)
        return LoadOutcome(True, f"loaded {pipeline.model_version}", time.perf_counter() - started)

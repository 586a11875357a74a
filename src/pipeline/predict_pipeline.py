"""The loaded model, under the name the project's users know: ``PredictPipeline``.

The class and its loaders live in ``src.answers.model``, beside everything else a loaded model answers; this
module keeps the familiar import path (``from src.pipeline.predict_pipeline import PredictPipeline``).
"""

from __future__ import annotations

from src.answers.model import Predictions, PredictPipeline, load_champion, load_version

__all__ = ["PredictPipeline", "Predictions", "load_champion", "load_version"]

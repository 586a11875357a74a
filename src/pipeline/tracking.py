"""MLflow tracking and registry for training runs. Only training imports this module; serving never needs MLflow.

One parent run per training (params, the data set as an input, test metrics, artifacts, plots and the
scikit-learn model: preprocessor and model in one Pipeline), one nested run per candidate. Every model that
passes the quality gate is registered as ``student-math-score``; it takes the alias ``champion`` only if,
on this run's test split, its R² is not lower than the current champion's by more than the tolerance.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from src.schema import FEATURE_NAMES, TARGET

logger = logging.getLogger(__name__)

MODEL_NAME = "student-math-score"
EXPERIMENT = "student-math-score"
CHAMPION = "champion"
HISTORY_TAG = "champion_history"
DEFAULT_TOLERANCE = 0.01  # R² points the new model may lose against the champion and still replace it
LOCAL_STORE = "mlflow.db"
LOCAL_ARTIFACTS = "mlruns"
PLOTS = ("predicted_vs_actual.png", "error_by_group.png")


class TrackingError(RuntimeError):
    """The tracking server cannot be used."""


def tracking_uri(environ: Mapping[str, str] | None = None, root: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI, else a sqlite store in the project folder (the current directory)."""
    env = os.environ if environ is None else environ
    if env.get("MLFLOW_TRACKING_URI"):
        return env["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(root or Path.cwd()) / LOCAL_STORE}"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, with one clear line, when a remote tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:  # noqa: S310
            if response.status != 200:
                raise TrackingError(f"MLflow tracking server {uri} answered {response.status} on /health")
    except (urllib.error.URLError, OSError) as err:
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({err}); start it, fix MLFLOW_TRACKING_URI, "
            "or train with --no-tracking"
        ) from err


@dataclass(frozen=True)
class RegistryDecision:
    version: str
    champion: bool
    reason: str


class TrainingRun:
    """The active parent run of one training."""

    def __init__(self, mlflow: Any, run: Any) -> None:
        self._mlflow = mlflow
        self.run = run
        self.run_id: str = run.info.run_id

    def log_result(self, result: Any) -> Any:
        """Everything about a finished, committed training: params, input, metrics, artifacts, model."""
        mlflow = self._mlflow
        manifest = result.manifest
        directory = result.manifest_path.parent
        test = result.trainer.metrics["test"]
        mlflow.log_params({
            "data_source": manifest["data"]["source"],
            "data_fingerprint": manifest["data"]["fingerprint"],
            "rows_valid": manifest["data"]["rows_valid"],
            "rows_rejected": manifest["data"]["rows_rejected"],
            "model": result.trainer.model_name,
            **{f"model_{k}": v for k, v in result.trainer.metrics["params"].items()},
        })
        mlflow.log_metrics({
            "test_r2": test["r2"], "test_mae": test["mae"], "test_rmse": test["rmse"],
            "test_interval_coverage": test["interval_coverage"],
            "cv_r2_mean": result.trainer.metrics["cv"]["r2_mean"], "cv_r2_std": result.trainer.metrics["cv"]["r2_std"],
            "interval_half_width": result.trainer.interval_half_width,
        })
        raw = pd.read_csv(directory / "raw.csv")
        dataset = mlflow.data.from_pandas(raw, source=_dataset_source(str(manifest["data"]["source"])),
                                          targets=TARGET.name, name=f"students-{manifest['data']['fingerprint'][:12]}")
        mlflow.log_input(dataset, context="training")
        for name in ("preprocessor.pkl", "model.pkl", "metrics.json", "manifest.json", "reference_profile.json"):
            mlflow.log_artifact(str(directory / name), artifact_path="artifacts")
        with tempfile.TemporaryDirectory() as tmp:
            for path in _plots(result, Path(tmp)):
                mlflow.log_artifact(str(path), artifact_path="plots")
        for candidate in result.trainer.candidates:
            with mlflow.start_run(run_name=candidate.name, nested=True):
                mlflow.log_params({"candidate": candidate.name, **candidate.params})
                mlflow.log_metrics({"cv_r2_mean": candidate.cv_r2_mean, "cv_r2_std": candidate.cv_r2_std})
        mlflow.set_tags({"model_version": manifest["model_version"], "chosen_model": result.trainer.model_name})
        return self._log_model(result)

    def _log_model(self, result: Any) -> Any:
        from mlflow.models import infer_signature
        from sklearn.pipeline import Pipeline

        pipeline = Pipeline([("preprocessor", result.transformation.preprocessor), ("model", result.trainer.model)])
        example = result.ingestion.test[list(FEATURE_NAMES)].head(5)
        signature = infer_signature(example, pipeline.predict(example))
        # skops, not pickle: loading it runs no code, only the types listed here, which this run itself built.
        import skops.io

        trusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
        return self._mlflow.sklearn.log_model(pipeline, name="model", signature=signature, input_example=example,
                                              serialization_format="skops", skops_trusted_types=trusted)

    def register(self, result: Any, model_info: Any, tolerance: float = DEFAULT_TOLERANCE) -> RegistryDecision:
        """Register the model; move ``champion`` to it unless it is worse than the champion on this test split."""
        mlflow = self._mlflow
        client = mlflow.MlflowClient()
        version = mlflow.register_model(model_info.model_uri, MODEL_NAME).version
        test_frame = result.ingestion.test
        new_r2 = float(result.trainer.metrics["test"]["r2"])
        try:
            current = client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
        except mlflow.exceptions.MlflowException:
            current = None
        if current is None:
            champion, reason = True, "first registered model"
        else:
            old = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}/{current.version}")
            old_r2 = _r2(test_frame[TARGET.name].to_numpy(dtype=float), old.predict(test_frame[list(FEATURE_NAMES)]))
            champion = new_r2 >= old_r2 - tolerance
            verb = "replaces" if champion else "does not replace"
            reason = (f"test R2 {new_r2:.4f} vs champion v{current.version} {old_r2:.4f} on the same test split "
                      f"(tolerance {tolerance}): {verb} it")
            mlflow.log_metric("champion_test_r2_same_split", old_r2)
        client.set_model_version_tag(MODEL_NAME, version, "role", CHAMPION if champion else "challenger")
        client.set_model_version_tag(MODEL_NAME, version, "decision", reason)
        mlflow.set_tag("registry_decision", reason)
        if champion:
            set_champion(client, str(version))
        logger.info("registered %s version %s: %s", MODEL_NAME, version, reason)
        return RegistryDecision(str(version), champion, reason)


@contextmanager
def training_run(uri: str, params: Mapping[str, Any]) -> Iterator[TrainingRun]:
    """Start the parent run on ``uri`` (checked first); the run ends FAILED if the body raises."""
    check_reachable(uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    launched_by_mlflow_run = bool(os.environ.get("MLFLOW_RUN_ID"))  # `mlflow run` made the run: use it
    if not launched_by_mlflow_run:
        if mlflow.get_experiment_by_name(EXPERIMENT) is None:
            location = None
            if uri.startswith("sqlite:///"):
                location = (Path(uri.removeprefix("sqlite:///")).parent / LOCAL_ARTIFACTS).resolve().as_uri()
            mlflow.create_experiment(EXPERIMENT, artifact_location=location)
        mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=None if launched_by_mlflow_run else "train") as run:
        mlflow.log_params(dict(params))
        yield TrainingRun(mlflow, run)


def set_champion(client: Any, version: str) -> None:
    """Point ``champion`` at ``version`` and remember the move, so that it can be rolled back."""
    history = champion_history(client)
    if not history or history[-1] != version:
        history.append(version)
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
    client.set_registered_model_tag(MODEL_NAME, HISTORY_TAG, json.dumps(history[-50:]))


def champion_history(client: Any) -> list[str]:
    model = client.get_registered_model(MODEL_NAME)
    raw = model.tags.get(HISTORY_TAG)
    return list(json.loads(raw)) if raw else []


def _r2(y: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import r2_score

    return float(r2_score(y, predicted))


def _plots(result: Any, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = result.ingestion.test
    actual = test[TARGET.name].to_numpy(dtype=float)
    predicted = result.trainer.test_predictions
    half = result.trainer.interval_half_width
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.errorbar(actual, predicted, yerr=half, fmt="o", ms=3, alpha=0.5, elinewidth=0.5)
    ax.plot([0, 100], [0, 100], "k--", lw=1)
    ax.set(xlabel="actual math score", ylabel="predicted math score (90% interval)",
           title=f"Test split: predicted vs actual ({result.trainer.model_name})")
    first = folder / PLOTS[0]
    fig.savefig(first, dpi=100, bbox_inches="tight")
    plt.close(fig)

    errors = np.abs(actual - predicted)
    groups = ["gender", "race_ethnicity", "lunch", "test_preparation_course", "parental_level_of_education"]
    fig, axes = plt.subplots(len(groups), 1, figsize=(7, 2.2 * len(groups)))
    for ax, column in zip(axes, groups, strict=True):
        mae = pd.Series(errors).groupby(test[column].to_numpy()).mean().sort_index()
        ax.barh(mae.index.astype(str), mae.to_numpy())
        ax.set(xlabel="mean absolute error (points)", title=f"Error by {column}")
    fig.tight_layout()
    second = folder / PLOTS[1]
    fig.savefig(second, dpi=100)
    plt.close(fig)
    return [first, second]


def _dataset_source(source: str) -> Any:
    """The MLflow dataset source of the training data, chosen here rather than guessed by MLflow.

    MLflow registers its local-file source twice (for no scheme and for ``file``), so resolving a bare path
    warns that it "can be interpreted in multiple ways"; the synthetic cohort is no file at all but code.
    """
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import get_registered_sources, resolve_dataset_source

    from src.components.data_ingestion import SYNTHETIC_SOURCE

    if source == SYNTHETIC_SOURCE:
        return CodeDatasetSource({"generator": "src.synthetic.generate_students"})
    local = [cls for cls in get_registered_sources() if cls.__name__ == "LocalArtifactDatasetSource"]
    if urllib.parse.urlparse(source).scheme in ("", "file") and local:
        return resolve_dataset_source(source, candidate_sources=local[:1])
    return source

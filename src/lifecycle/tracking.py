"""MLflow tracking and registry for training runs. Only training imports this module; serving never needs MLflow.

One parent run per training (params, the data set as an input, test metrics, artifacts, plots and the
scikit-learn model: preprocessor and model in one Pipeline), one nested run per candidate. Every model that
training registers its model as ``student-math-score``, tagged with the store's ``model_version``; the alias
``champion`` is moved only by the decision (``src.lifecycle.decision``), through ``MlflowRegistry``, in the same
step as the store's pointer, so the two always name the same model.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from src.schema import FEATURE_NAMES, TARGET

logger = logging.getLogger(__name__)

MODEL_NAME = "student-math-score"
EXPERIMENT = "student-math-score"
CHAMPION = "champion"
HISTORY_TAG = "champion_history"
VERSION_TAG = "model_version"  # the store's version of a registered model
LOCAL_STORE = "mlflow.db"
LOCAL_ARTIFACTS = "mlruns"


class TrackingError(RuntimeError):
    """The tracking server cannot be used."""


def tracking_uri(environ: Mapping[str, str] | None = None, root: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI, else a sqlite store in the project folder (the current directory)."""
    env = os.environ if environ is None else environ
    if env.get("MLFLOW_TRACKING_URI"):
        return env["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(root or Path.cwd()) / LOCAL_STORE}"


# A SageMaker managed tracking server, as MLFLOW_TRACKING_URI (the sagemaker-mlflow plugin resolves it).
SAGEMAKER_ARN = re.compile(
    r"arn:aws[a-z-]*:sagemaker:(?P<region>[a-z0-9-]+):\d{12}:"
    r"mlflow-tracking-server/(?P<name>[A-Za-z0-9](-*[A-Za-z0-9]){0,255})"
)


def check_reachable(uri: str, timeout: float = 5.0, sagemaker: Any = None) -> None:
    """Fail fast, with one clear line, when a remote tracking server does not answer or is not running.

    ``sagemaker``: the boto3 SageMaker client that describes a managed server (default: one for its region).
    """
    if uri.startswith("arn:"):
        _check_managed_server(uri, timeout, sagemaker)
        return
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


def _check_managed_server(uri: str, timeout: float, sagemaker: Any) -> None:
    """A SageMaker tracking server must be active: a stopped one (to save its hourly cost) fails here."""
    match = SAGEMAKER_ARN.fullmatch(uri)
    if match is None:
        raise TrackingError(
            f"MLflow tracking URI {uri} is not a SageMaker MLflow tracking server ARN "
            "(arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>)"
        )
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    name = match["name"]
    client = sagemaker or boto3.client(
        "sagemaker",
        region_name=match["region"],
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"total_max_attempts": 2}),
    )
    try:
        server = client.describe_mlflow_tracking_server(TrackingServerName=name)
    except (BotoCoreError, ClientError) as err:
        raise TrackingError(f"MLflow tracking server {uri} cannot be reached ({err})") from err
    if server.get("IsActive") != "Active":
        raise TrackingError(
            f"MLflow tracking server {name} is {server.get('TrackingServerStatus', 'not active')}, not running; "
            f"start it (aws sagemaker start-mlflow-tracking-server --tracking-server-name {name}), wait until "
            "it is Started, and run again"
        )


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
        mlflow.log_params(
            {
                "data_source": manifest["data"]["source"],
                "data_fingerprint": manifest["data"]["fingerprint"],
                "rows_valid": manifest["data"]["rows_valid"],
                "rows_rejected": manifest["data"]["rows_rejected"],
                "model": result.trainer.model_name,
                **{f"model_{k}": v for k, v in result.trainer.metrics["params"].items()},
            }
        )
        mlflow.log_metrics(
            {
                "test_r2": test["r2"],
                "test_mae": test["mae"],
                "test_rmse": test["rmse"],
                "test_interval_coverage": test["interval_coverage"],
                "cv_r2_mean": result.trainer.metrics["cv"]["r2_mean"],
                "cv_r2_std": result.trainer.metrics["cv"]["r2_std"],
                "interval_half_width": result.trainer.interval_half_width,
                **below_cut_metric_names(result.trainer.metrics["below_cut"]),
            }
        )
        raw = pd.read_csv(result.ingestion.raw_path)
        dataset = mlflow.data.from_pandas(
            raw,
            source=_dataset_source(str(manifest["data"]["source"])),
            targets=TARGET.name,
            name=f"students-{manifest['data']['fingerprint'][:12]}",
        )
        mlflow.log_input(dataset, context="training")
        for name in sorted(manifest["files"]) + ["manifest.json"]:
            mlflow.log_artifact(str(directory / name), artifact_path="artifacts")
        for name in manifest.get("plots", []):  # made at training (src.components.plots), in the set
            mlflow.log_artifact(str(directory / name), artifact_path="plots")
        groups = result.trainer.metrics.get("groups", {})
        mlflow.log_dict(groups, "groups.json")
        mlflow.log_metrics(group_metric_names(groups))
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
        self._mlflow.sklearn.log_model(
            pipeline,
            name="sklearn-model",
            signature=signature,
            input_example=example,
            serialization_format="skops",
            skops_trusted_types=trusted,
            pip_requirements=_sklearn_requirements(self._mlflow),
        )
        # What is registered answers like the API (score, range, band), also through spark_udf.
        from src.batch.pyfunc import log_answers_model
        from src.config import AppConfig

        return log_answers_model(result.manifest_path.parent, support_cut=AppConfig.support_cut, name="model")

    def register(self, result: Any, model_info: Any) -> MlflowRegistry:
        """Register the candidate, tagged with its store version; the decision then moves the alias or not."""
        mlflow = self._mlflow
        registered = mlflow.register_model(model_info.model_uri, MODEL_NAME, tags={VERSION_TAG: result.version})
        logger.info("registered %s version %s for model version %s", MODEL_NAME, registered.version, result.version)
        return MlflowRegistry(mlflow.MlflowClient())

    def log_decision(self, decision: Any) -> None:
        self._mlflow.set_tags({"registry_decision": decision.reason, "decision": decision.action})


class MlflowRegistry:
    """The registry side of the decision: the ``champion`` alias follows the store's pointer."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def registered_version(self, model_version: str) -> str:
        """The registry's version number of the store's ``model_version``."""
        for mv in self.client.search_model_versions(f"name = '{MODEL_NAME}'"):
            if (mv.tags or {}).get(VERSION_TAG) == model_version:
                return str(mv.version)
        raise TrackingError(
            f"model version {model_version} is not registered as {MODEL_NAME} in the MLflow "
            "registry (trained with --no-tracking?); promote it with --no-tracking"
        )

    def moved(self, version: str, reason: str) -> None:
        number = self.registered_version(version)
        self.client.set_model_version_tag(MODEL_NAME, number, "role", CHAMPION)
        self.client.set_model_version_tag(MODEL_NAME, number, "decision", reason)
        set_champion(self.client, number)

    def kept(self, version: str, reason: str) -> None:
        number = self.registered_version(version)
        self.client.set_model_version_tag(MODEL_NAME, number, "role", "challenger")
        self.client.set_model_version_tag(MODEL_NAME, number, "decision", reason)


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


def below_cut_metric_names(report: Mapping[str, Any]) -> dict[str, float]:
    """MLflow metrics of the chance below the cut on the test split: ours and the logistic baseline's."""
    metrics = {"below_cut_brier": float(report["model"]["brier"]), "below_cut_ece": float(report["model"]["ece"])}
    if report.get("baseline") is not None:
        metrics["baseline_below_cut_brier"] = float(report["baseline"]["brier"])
        metrics["baseline_below_cut_ece"] = float(report["baseline"]["ece"])
    return metrics


def group_metric_names(groups: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, float]:
    """MLflow metrics ``group_mae/<feature>/<group>`` and ``group_coverage/...`` (names MLflow accepts)."""
    metrics: dict[str, float] = {}
    for feature, rows in groups.items():
        for group, row in rows.items():
            label = "/".join(re.sub(r"[^A-Za-z0-9_.-]", "_", part) for part in (feature, group))
            for key in ("mae", "bias", "coverage"):
                if row.get(key) is not None:
                    metrics[f"group_{key}/{label}"] = float(row[key])
    return metrics


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


def _sklearn_requirements(mlflow: Any) -> list[str]:
    """What the scikit-learn model needs, pinned to the versions that trained it: the flavor's own (scikit-learn,
    skops) and the libraries its objects are made of. Given, MLflow does not work them out by loading the model
    again in a Python of its own (several seconds of every tracked training)."""
    from importlib import metadata

    pinned = [f"{name}=={metadata.version(name)}" for name in ("numpy", "scipy", "pandas")]
    return [*mlflow.sklearn.get_default_pip_requirements(include_skops=True), *pinned]

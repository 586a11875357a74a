"""Train: ingestion -> transformation -> model trainer, into a staging folder, then commit the artifact set.

    python -m src.pipeline.train_pipeline [--data SOURCE] [--artifacts-dir DIR] [--test-size F] [--seed N]

Without ``--data``: ``data/students.csv`` if present, else the synthetic cohort. A run that fails (bad data,
quality gate, tracking server down) leaves the previous artifacts byte-identical.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import shutil
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import dill
import numpy
import sklearn

from src import schema
from src.components.data_ingestion import (
    SYNTHETIC_SOURCE,
    DataIngestion,
    DataIngestionArtifact,
    DataIngestionConfig,
    IngestionError,
)
from src.components.data_transformation import (
    DataTransformation,
    DataTransformationArtifact,
    DataTransformationConfig,
)
from src.components.model_trainer import (
    Candidate,
    ModelTrainer,
    ModelTrainerArtifact,
    ModelTrainerConfig,
    QualityGateError,
    default_candidates,
)
from src.config import configure_logging
from src.monitoring.drift import build_reference
from src.pipeline.factors import training_summary
from src.pipeline.tracking import (
    DEFAULT_TOLERANCE,
    MODEL_NAME,
    RegistryDecision,
    TrackingError,
    tracking_uri,
    training_run,
)
from src.schema import SchemaError
from src.storage import MANIFEST_FORMAT, ArtifactError, DataSourceError, commit_artifact_set, sha256_file, write_json

logger = logging.getLogger(__name__)

DEFAULT_DATA = Path("data/students.csv")
FAILED_RUN_DIR = "failed-run"
REFERENCE_PROFILE = "reference_profile.json"


class TrainingError(RuntimeError):
    """Training stopped; the message says why in one line."""


@dataclass(frozen=True)
class TrainingConfig:
    artifacts_dir: Path = Path("artifacts")
    data: str | None = None
    test_size: float = 0.2
    seed: int = 42
    cv_folds: int = 5
    min_test_r2: float = 0.6
    synthetic_rows: int = 1000
    n_jobs: int = -1
    tracking: bool = True
    shuffle_labels: bool = False  # for checking that a worse model is refused by the registry
    candidates: tuple[str, ...] | None = None  # names from default_candidates(); None: all of them


@dataclass(frozen=True)
class TrainingResult:
    """A committed training. The components' paths pointed into the staging folder, which is gone: read
    files from ``manifest_path.parent``."""

    manifest: dict[str, Any]
    ingestion: DataIngestionArtifact
    transformation: DataTransformationArtifact
    trainer: ModelTrainerArtifact
    manifest_path: Path


def resolve_source(data: str | None) -> str:
    if data:
        return data
    if DEFAULT_DATA.is_file():
        return str(DEFAULT_DATA)
    return SYNTHETIC_SOURCE


def train(config: TrainingConfig, tracker: Any | None = None) -> TrainingResult:
    """Run the three components in a staging folder and commit the artifact set with its manifest."""
    source = resolve_source(config.data)
    if source == SYNTHETIC_SOURCE:
        logger.info("no data given and no %s: training on %d synthetic students", DEFAULT_DATA,
                    config.synthetic_rows)
    target = config.artifacts_dir
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f".staging-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        ingestion = DataIngestion(
            DataIngestionConfig(
                artifacts_dir=staging,
                source=source,
                synthetic_rows=config.synthetic_rows,
                test_size=config.test_size,
                seed=config.seed,
            )
        ).run()
        if config.shuffle_labels:
            ingestion = _with_shuffled_labels(ingestion, config.seed)
        transformation = DataTransformation(DataTransformationConfig(artifacts_dir=staging)).run(ingestion)
        trainer = ModelTrainer(
            ModelTrainerConfig(
                artifacts_dir=staging,
                cv_folds=config.cv_folds,
                seed=config.seed,
                min_test_r2=config.min_test_r2,
                n_jobs=config.n_jobs,
                candidates=_select_candidates(config),
            )
        ).run(transformation)
        write_json(staging / REFERENCE_PROFILE, build_reference(ingestion.train, trainer.test_predictions))
        manifest = _manifest(config, ingestion, trainer)
        if tracker is not None:
            manifest["run_id"] = tracker.run_id
        manifest_path = commit_artifact_set(staging, target, manifest)
    except BaseException:
        _keep_failed_run(staging, target)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    committed = json.loads(manifest_path.read_text(encoding="utf-8"))
    return TrainingResult(committed, ingestion, transformation, trainer, manifest_path)


def _manifest(config: TrainingConfig, ingestion: DataIngestionArtifact, trainer: ModelTrainerArtifact) -> dict:
    created = datetime.now(UTC)
    model_hash = sha256_file(trainer.model_path)
    return {
        "format": MANIFEST_FORMAT,
        "model_version": f"{created:%Y%m%dT%H%M%SZ}-{model_hash[:8]}",
        "created_at": created.isoformat(timespec="seconds"),
        "model": trainer.model_name,
        **schema.describe(),
        "metrics": {"test": trainer.metrics["test"], "cv": trainer.metrics["cv"]},
        "interval": trainer.metrics["interval"],
        "data": {
            "source": ingestion.source,
            "fingerprint": ingestion.fingerprint,
            "rows_read": ingestion.rows_read,
            "rows_valid": ingestion.rows_valid,
            "rows_rejected": ingestion.rows_rejected,
            "test_size": config.test_size,
            "seed": config.seed,
        },
        "versions": software_versions(),
        "reference_profile": REFERENCE_PROFILE,
        "explanation": training_summary(ingestion.train, trainer.metrics["train_mean_prediction"]),
        "run_id": None,
    }


def software_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "dill": dill.__version__,
        "numpy": numpy.__version__,
    }


def _select_candidates(config: TrainingConfig) -> tuple[Candidate, ...] | None:
    if config.candidates is None:
        return None
    known = {c.name: c for c in default_candidates(config.seed)}
    unknown = sorted(set(config.candidates) - known.keys())
    if unknown:
        raise TrainingError(f"unknown candidate model(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return tuple(known[name] for name in config.candidates)


def _with_shuffled_labels(ingestion: DataIngestionArtifact, seed: int) -> DataIngestionArtifact:
    train = ingestion.train.copy()
    train[schema.TARGET.name] = numpy.random.default_rng(seed).permutation(train[schema.TARGET.name].to_numpy())
    return dataclasses.replace(ingestion, train=train)


def _keep_failed_run(staging: Path, target: Path) -> None:
    """Keep the failed run's files (rejected.csv above all) beside, never over, the committed set."""
    failed = target / FAILED_RUN_DIR
    shutil.rmtree(failed, ignore_errors=True)
    try:
        staging.rename(failed)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)


def train_tracked(config: TrainingConfig, uri: str, tolerance: float) -> tuple[TrainingResult, RegistryDecision]:
    """Train inside an MLflow run, log everything, register the model and decide on ``champion``."""
    params = {
        "data": resolve_source(config.data),
        "test_size": config.test_size,
        "seed": config.seed,
        "cv_folds": config.cv_folds,
        "min_test_r2": config.min_test_r2,
        "candidates": ",".join(config.candidates) if config.candidates else "all",
        "shuffle_labels": config.shuffle_labels,
    }
    from mlflow.exceptions import MlflowException  # training with tracking only: serving never imports MLflow

    try:
        with training_run(uri, params) as run:
            result = train(config, tracker=run)
            model_info = run.log_result(result)
            decision = run.register(result, model_info, tolerance=tolerance)
    except MlflowException as err:
        raise TrackingError(f"MLflow: {str(err).splitlines()[0]}") from err
    return result, decision


def format_report(result: TrainingResult) -> str:
    metrics = result.trainer.metrics
    lines = [f"{'candidate':<20} {'CV R2 mean':>10} {'CV R2 std':>10}"]
    for c in result.trainer.candidates:
        mark = "  <- chosen" if c.name == result.trainer.model_name else ""
        lines.append(f"{c.name:<20} {c.cv_r2_mean:>10.4f} {c.cv_r2_std:>10.4f}{mark}")
    test = metrics["test"]
    data = result.manifest["data"]
    lines += [
        "",
        f"data:     {data['source']} ({data['rows_valid']} valid rows, {data['rows_rejected']} rejected)",
        f"model:    {result.trainer.model_name} {metrics['params']}",
        f"test:     R2 {test['r2']:.4f}  MAE {test['mae']:.3f}  RMSE {test['rmse']:.3f}",
        f"interval: {metrics['interval']['level']:.0%} +/- {metrics['interval']['half_width']:.2f} points, "
        f"test coverage {test['interval_coverage']:.3f}",
        f"version:  {result.manifest['model_version']} -> {result.manifest_path}",
    ]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m src.pipeline.train_pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="CSV path, http(s) URL or s3://bucket/key (default: data/students.csv, "
                        "else the synthetic cohort)")
    parser.add_argument("--artifacts-dir", type=Path, default=Path("artifacts"))
    parser.add_argument("--test-size", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cv-folds", type=int, default=5)
    parser.add_argument("--min-r2", type=float, default=0.6, help="quality gate on test R2 (default 0.6)")
    parser.add_argument("--synthetic-rows", type=int, default=1000)
    parser.add_argument("--models", help="comma-separated candidate names (default: all)")
    parser.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else "
                        "sqlite:///mlflow.db in the current folder)")
    parser.add_argument("--champion-tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help=f"R2 the new model may lose against the champion and still replace it "
                        f"(default {DEFAULT_TOLERANCE})")
    parser.add_argument("--shuffle-labels", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging("INFO")
    out = out or sys.stdout
    if not 0.0 < args.test_size < 1.0:
        out.write("training failed: --test-size must be between 0 and 1\n")
        return 2
    config = TrainingConfig(
        artifacts_dir=args.artifacts_dir,
        data=args.data,
        test_size=args.test_size,
        seed=args.seed,
        cv_folds=args.cv_folds,
        min_test_r2=args.min_r2,
        synthetic_rows=args.synthetic_rows,
        tracking=not args.no_tracking,
        shuffle_labels=args.shuffle_labels,
        candidates=tuple(args.models.split(",")) if args.models else None,
    )
    decision = None
    try:
        if config.tracking:
            uri = args.tracking_uri or tracking_uri()
            result, decision = train_tracked(config, uri, args.champion_tolerance)
        else:
            result = train(config)
    except (IngestionError, QualityGateError, SchemaError, DataSourceError, ArtifactError, TrainingError,
            TrackingError) as err:
        out.write(f"training failed: {err}\n")
        return 1
    out.write(format_report(result))
    if decision is not None:
        out.write(f"registry: {MODEL_NAME} version {decision.version}: {decision.reason}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

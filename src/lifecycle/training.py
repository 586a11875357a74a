"""Training a candidate into the model store, then the one decision: promote it or keep the champion.

Run by ``python -m src.pipeline.train_pipeline`` (and by ``retrain``); the run's student records stay in the
training-runs folder, never in the store."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import platform
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dill
import numpy
import sklearn

from src import schema
from src.answers.below_cut import MANIFEST_KEY as PREDICTIVE_DISTRIBUTION
from src.answers.below_cut import METHOD as BELOW_CUT_METHOD
from src.answers.below_cut import below_cut_probability, distribution_record
from src.answers.evaluation import band_promise, policy_misses
from src.answers.factors import background_points, build_factors, training_summary
from src.answers.fast_path import compile_scorer
from src.answers.model import CHECK_ROWS, check_rows
from src.components.calibration import calibration_report, logistic_baseline
from src.components.data_ingestion import (
    REJECTED,
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
    default_candidates,
)
from src.components.plots import PLOTS, write_plots
from src.lifecycle.decision import Decision, DecisionConfig, check_population, decide
from src.lifecycle.reports import export_reports
from src.lifecycle.tracking import TrackingError, training_run
from src.lifecycle.workers import workers_die_with_this_process
from src.monitoring.drift import build_reference
from src.signing import SigningKey
from src.storage import MANIFEST_FORMAT, MANIFEST_NAME, is_s3, write_json
from src.store import TRAINING_RUNS, LocalStore, open_store, process_alive, seal_set
from src.validation import StudentColumns

logger = logging.getLogger(__name__)

DEFAULT_DATA = Path("data/students.csv")
FAILED_RUN_DIR = "failed-run"
SET_FOLDER = "set"
REFERENCE_PROFILE = "reference_profile.json"


class TrainingError(RuntimeError):
    """Training stopped; the message says why in one line."""


@dataclass(frozen=True)
class TrainingConfig:
    store: str | Path = "artifacts"  # a folder or s3://bucket/prefix
    data: str | None = None
    test_size: float = 0.2
    seed: int = 42
    cv_folds: int = 5
    synthetic_rows: int = 1000
    n_jobs: int = -1
    tracking: bool = True
    shuffle_labels: bool = False  # for checking that a worse model is refused by the decision
    candidates: tuple[str, ...] | None = None  # names from default_candidates(); None: all of them
    decision: DecisionConfig = DecisionConfig()
    runs_dir: Path | None = None  # student records of each run; default: <store>/training-runs, or ./training-runs
    cache_dir: Path = Path(".model-cache")  # where an S3 store's sets are read through
    signing_key: SigningKey | None = field(default=None, repr=False)  # MODEL_SIGNING_KEY
    verify_keys: tuple[SigningKey, ...] = field(default=(), repr=False)  # MODEL_VERIFY_KEYS

    def resolved_runs_dir(self) -> Path:
        if self.runs_dir is not None:
            return self.runs_dir
        if is_s3(str(self.store)):
            return Path(TRAINING_RUNS)
        return Path(self.store) / TRAINING_RUNS

    exclude_features: tuple[str, ...] = ()  # features the model must not see (still accepted and validated)
    reports_dir: Path | None = None  # also copy metrics, plots and the set here (a fixed path for DVC)
    trigger: str | None = None  # why this training runs (retrain's reason), written into the decision record
    support_cut: float = 50.0  # the cut the chance below it is measured at on the test split (SUPPORT_CUT's default)
    population: str = ""  # whose students the data describes ("" : "students" for real data); see decision.Provenance


@dataclass(frozen=True)
class TrainingResult:
    """A finished training: the candidate's set (``manifest_path.parent``, a local folder), its run's records
    (``run_dir``) and the decision."""

    manifest: dict[str, Any]
    ingestion: DataIngestionArtifact
    transformation: DataTransformationArtifact
    trainer: ModelTrainerArtifact
    manifest_path: Path
    run_dir: Path
    store: str
    decision: Decision

    @property
    def version(self) -> str:
        return str(self.manifest["model_version"])


def resolve_source(data: str | None) -> str:
    if data:
        return data
    if DEFAULT_DATA.is_file():
        return str(DEFAULT_DATA)
    return SYNTHETIC_SOURCE


def train(config: TrainingConfig, tracker: Any | None = None) -> TrainingResult:
    """Train a candidate into the store, then decide. With a tracker (an MLflow run) the candidate is logged and
    registered before the decision, and the registry's alias follows it."""
    candidate = train_candidate(config, tracker)
    registry = None
    if tracker is not None:
        model_info = tracker.log_result(candidate)
        registry = tracker.register(candidate, model_info)
    store = open_store(config.store, cache_dir=config.cache_dir)
    decision = decide(
        store,
        candidate.version,
        candidate.ingestion.test,
        config.decision,
        keys=config.verify_keys,
        registry=registry,
        trigger=config.trigger,
        runs_dir=config.resolved_runs_dir(),
    )
    if config.reports_dir is not None:
        export_reports(candidate.manifest_path.parent, config.reports_dir)
    return dataclasses.replace(candidate, decision=decision)


def train_candidate(config: TrainingConfig, tracker: Any | None = None) -> TrainingResult:
    """Run the three components in a private run folder, seal the set, and add it to the store (unserved)."""
    source = resolve_source(config.data)
    try:
        check_population(config.population, source == SYNTHETIC_SOURCE)
    except ValueError as err:
        raise TrainingError(str(err)) from err
    if source == SYNTHETIC_SOURCE:
        logger.info("no data given and no %s: training on %d synthetic students", DEFAULT_DATA, config.synthetic_rows)
    runs = config.resolved_runs_dir()
    runs.mkdir(parents=True, exist_ok=True)
    remove_abandoned_runs(runs)
    run_tag = uuid.uuid4().hex
    work = runs / f".run-{os.getpid()}-{run_tag[:8]}"
    set_dir = work / SET_FOLDER
    set_dir.mkdir(parents=True)
    with _run_lock(work), workers_die_with_this_process():
        return _train_in(config, tracker, source, runs, work, run_tag)


def _train_in(
    config: TrainingConfig, tracker: Any | None, source: str, runs: Path, work: Path, run_tag: str
) -> TrainingResult:
    set_dir = work / SET_FOLDER
    try:
        ingestion = DataIngestion(
            DataIngestionConfig(
                artifacts_dir=work,
                source=source,
                synthetic_rows=config.synthetic_rows,
                test_size=config.test_size,
                seed=config.seed,
            )
        ).run()
        if config.shuffle_labels:
            ingestion = _with_shuffled_labels(ingestion, config.seed)
        transformation = DataTransformation(
            DataTransformationConfig(artifacts_dir=set_dir, exclude=config.exclude_features)
        ).run(ingestion)
        trainer = ModelTrainer(
            ModelTrainerConfig(
                artifacts_dir=set_dir,
                cv_folds=config.cv_folds,
                seed=config.seed,
                n_jobs=config.n_jobs,
                candidates=_select_candidates(config),
            )
        ).run(transformation)
        trainer = _with_below_cut(trainer, transformation, config)
        write_json(set_dir / REFERENCE_PROFILE, build_reference(ingestion.train, trainer.test_predictions))
        check_rows(transformation.preprocessor, trainer.model, seed=config.seed).to_csv(set_dir / CHECK_ROWS, index=False)
        write_plots(
            set_dir,
            transformation.y_test,
            trainer.test_predictions,
            trainer.interval_half_width,
            trainer.metrics["groups"],
            trainer.model_name,
        )
        manifest = _manifest(config, ingestion, trainer, run_tag)
        manifest["band_policies"] = _band_policies(config, ingestion, transformation, trainer, manifest)
        if tracker is not None:
            manifest["run_id"] = tracker.run_id
        manifest = seal_set(set_dir, manifest, config.signing_key)
    except IngestionError as err:
        failed = _keep_failed_run(work, runs)
        raise IngestionError(f"{err}: {failed / REJECTED}") from err
    except BaseException:
        _keep_failed_run(work, runs)
        raise
    run_dir = runs / manifest["model_version"]
    os.rename(work, run_dir)
    (run_dir / RUN_LOCK).unlink(missing_ok=True)
    ingestion = _moved(ingestion, work, run_dir)
    store = open_store(config.store, cache_dir=config.cache_dir)
    store.add_set(run_dir / SET_FOLDER)
    local_set = store.set_dir(manifest["model_version"]) if isinstance(store, LocalStore) else run_dir / SET_FOLDER
    placeholder = Decision("candidate", manifest["model_version"], None, "not decided yet")
    return TrainingResult(
        manifest, ingestion, transformation, trainer, local_set / MANIFEST_NAME, run_dir, store.location, placeholder
    )


def _with_below_cut(
    trainer: ModelTrainerArtifact, data: DataTransformationArtifact, config: TrainingConfig
) -> ModelTrainerArtifact:
    """Measure the chance below the cut on the test split beside the logistic baseline; into metrics.json."""
    residuals = numpy.sort(trainer.residuals)
    ours = below_cut_probability(trainer.test_predictions, residuals, config.support_cut)
    baseline = logistic_baseline(data.x_train, data.y_train, data.x_test, config.support_cut, config.seed)
    report = calibration_report(ours, baseline, data.y_test, config.support_cut, BELOW_CUT_METHOD)
    metrics = {**trainer.metrics, "below_cut": report}
    write_json(trainer.metrics_path, metrics)
    return dataclasses.replace(trainer, metrics=metrics)


def _band_policies(
    config: TrainingConfig,
    ingestion: DataIngestionArtifact,
    transformation: DataTransformationArtifact,
    trainer: ModelTrainerArtifact,
    manifest: dict[str, Any],
) -> dict[str, Any]:
    """Per student group of the test split: flagged, really below the cut, and missed under each band policy
    (the scores-only bands need exact factors: the background details' contributions set aside)."""
    test = ingestion.test
    factors = build_factors(compile_scorer(transformation.preprocessor, trainer.model), manifest)
    background = None
    if factors.available:
        background = background_points(factors.columns(StudentColumns.from_frame(test)))
    return policy_misses(
        test,
        test[schema.TARGET.name].to_numpy(dtype=float),
        trainer.test_predictions,
        background,
        trainer.interval_half_width,
        config.support_cut,
    )


def _moved(ingestion: DataIngestionArtifact, old: Path, new: Path) -> DataIngestionArtifact:
    def move(path: Path) -> Path:
        return new / path.relative_to(old)

    return dataclasses.replace(
        ingestion,
        raw_path=move(ingestion.raw_path),
        train_path=move(ingestion.train_path),
        test_path=move(ingestion.test_path),
        rejected_path=move(ingestion.rejected_path),
    )


def _manifest(config: TrainingConfig, ingestion: DataIngestionArtifact, trainer: ModelTrainerArtifact, run_tag: str) -> dict:
    created = datetime.now(UTC)
    return {
        "format": MANIFEST_FORMAT,
        # The training time and this run's random tag: two runs that make the same model within one second
        # (the same data and seed) still get two versions, never one name for two sets.
        "model_version": f"{created:%Y%m%dT%H%M%SZ}-{run_tag[:8]}",
        "created_at": created.isoformat(timespec="seconds"),
        "model": trainer.model_name,
        **schema.describe(),
        "metrics": {"test": trainer.metrics["test"], "cv": trainer.metrics["cv"], "below_cut": trainer.metrics["below_cut"]},
        "interval": trainer.metrics["interval"],
        # what the band promised on the test split, for every whole cut (the class evaluation stands beside it)
        "band_outcomes": band_promise(
            ingestion.test[schema.TARGET.name].to_numpy(dtype=float), trainer.test_predictions, trainer.interval_half_width
        ),
        PREDICTIVE_DISTRIBUTION: distribution_record(trainer.residuals),
        "data": {
            "source": ingestion.source,
            "fingerprint": ingestion.fingerprint,
            # provenance: the decision never lets a model of other students replace the champion by itself
            "synthetic": ingestion.source == SYNTHETIC_SOURCE,
            "population": check_population(config.population, ingestion.source == SYNTHETIC_SOURCE),
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
        **_card_fields(config, trainer),
    }


def _card_fields(config: TrainingConfig, trainer: ModelTrainerArtifact) -> dict[str, Any]:
    """What the model page shows beyond the metrics: groups, the features the model saw, the plots."""
    return {
        "groups": trainer.metrics["groups"],
        "features_used": [name for name in schema.FEATURE_NAMES if name not in config.exclude_features],
        "excluded_features": list(config.exclude_features),
        "plots": list(PLOTS),
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


# A run's private folder while it works (``.run-<pid>-<tag>``): it holds student records, and an exclusive
# lock on its RUN_LOCK file for as long as the run's process lives (the system releases it when a kill -9 ends
# the process). A later run removes the folders nobody holds.
RUN_FOLDER = re.compile(r"\.run-(\d+)-[0-9a-f]{8}")
RUN_LOCK = ".lock"


@contextlib.contextmanager
def _run_lock(work: Path) -> Iterator[None]:
    fd = os.open(work / RUN_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_abandoned_runs(runs: Path) -> list[Path]:
    """Delete the private folders of runs whose process died (kill -9, power loss); return them.

    Only folders named as train_candidate names them; one whose lock is held (a run in progress, here or on
    another host sharing the folder) is kept. A folder without a lock file is abandoned if its process is gone.
    """
    removed = []
    for path in sorted(runs.iterdir()):
        match = RUN_FOLDER.fullmatch(path.name)
        if match is None or path.is_symlink() or not path.is_dir():
            continue
        lock = path / RUN_LOCK
        if lock.is_file():
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live run holds it
            else:
                shutil.rmtree(path, ignore_errors=True)
            finally:
                os.close(fd)
        elif not process_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
        else:
            continue
        logger.warning("removed the folder of an abandoned training run: %s", path)
        removed.append(path)
    return removed


def _keep_failed_run(work: Path, runs: Path) -> Path:
    """Keep the last failed run's files (rejected.csv above all) as ``<runs>/failed-run``."""
    failed = runs / FAILED_RUN_DIR
    shutil.rmtree(failed, ignore_errors=True)
    try:
        work.rename(failed)
    except OSError:
        shutil.rmtree(work, ignore_errors=True)
    return failed


def train_tracked(config: TrainingConfig, uri: str) -> TrainingResult:
    """Train inside an MLflow run: log everything, register the model, and let the decision move the alias."""
    params = {
        "data": resolve_source(config.data),
        "test_size": config.test_size,
        "seed": config.seed,
        "cv_folds": config.cv_folds,
        "min_test_r2": config.decision.min_test_r2,
        "champion_tolerance": config.decision.tolerance,
        "candidates": ",".join(config.candidates) if config.candidates else "all",
        "shuffle_labels": config.shuffle_labels,
        "exclude_features": ",".join(config.exclude_features) or "none",
        "group_tolerance": config.decision.group_tolerance,
        "support_cut": config.support_cut,
    }
    from mlflow.exceptions import MlflowException  # training with tracking only: serving never imports MLflow

    try:
        with training_run(uri, params) as run:
            result = train(config, tracker=run)
            run.log_decision(result.decision)
    except MlflowException as err:
        raise TrackingError(f"MLflow: {str(err).splitlines()[0]}") from err
    return result

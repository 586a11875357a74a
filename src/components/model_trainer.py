"""Model training: candidates tuned by k-fold CV on the training split, the best by CV, one test evaluation.

The 90 % prediction interval is split-free conformal: the absolute out-of-fold residuals of the chosen
model on the training split give the half-width (with the finite-sample rank ``ceil((n + 1) * level)``), so
the test split stays untouched until the single, final evaluation. The signed residuals are kept in the
artifact: the chance of a score below the cut comes from them too (``src.answers.below_cut``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dill
import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import Lasso, LinearRegression, Ridge
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_predict
from sklearn.neighbors import KNeighborsRegressor

from src.components.data_transformation import DataTransformationArtifact
from src.components.group_metrics import group_metrics
from src.storage import atomic_write_bytes, write_json

logger = logging.getLogger(__name__)


class QualityGateError(RuntimeError):
    """The best model is not good enough to publish."""


@dataclass(frozen=True)
class Candidate:
    name: str
    estimator: BaseEstimator
    grid: Mapping[str, list[Any]]


def default_candidates(seed: int) -> tuple[Candidate, ...]:
    """Plain and regularised linear models, a random forest, gradient boosting (stopped early) and k-NN, with small
    grids."""
    return (
        Candidate("linear_regression", LinearRegression(), {}),
        Candidate("ridge", Ridge(), {"alpha": [0.1, 1.0, 10.0, 100.0]}),
        Candidate("lasso", Lasso(max_iter=10_000), {"alpha": [0.01, 0.1, 1.0]}),
        Candidate(
            "random_forest",
            RandomForestRegressor(n_estimators=100, random_state=seed),
            {"max_depth": [None, 8], "min_samples_leaf": [1, 5]},
        ),
        Candidate(
            "gradient_boosting",
            # up to 300 stages, stopping after 10 that do not improve on a held-out tenth of the fold
            GradientBoostingRegressor(n_estimators=300, n_iter_no_change=10, validation_fraction=0.1, random_state=seed),
            {"learning_rate": [0.05, 0.1], "max_depth": [2, 3]},
        ),
        Candidate(
            "knn",
            KNeighborsRegressor(),
            {"n_neighbors": [5, 10, 20], "weights": ["uniform", "distance"]},
        ),
    )


@dataclass(frozen=True)
class ModelTrainerConfig:
    artifacts_dir: Path
    cv_folds: int = 5
    seed: int = 42
    interval_level: float = 0.9
    n_jobs: int = -1
    candidates: tuple[Candidate, ...] | None = None  # None: default_candidates(seed)


@dataclass(frozen=True)
class CandidateResult:
    name: str
    cv_r2_mean: float
    cv_r2_std: float
    params: Mapping[str, Any]


@dataclass(frozen=True)
class ModelTrainerArtifact:
    model_path: Path
    metrics_path: Path
    model: BaseEstimator
    model_name: str
    metrics: Mapping[str, Any]
    candidates: tuple[CandidateResult, ...]
    interval_half_width: float
    test_predictions: np.ndarray = field(repr=False)  # unclipped
    # signed out-of-fold residuals (real minus predicted) on the training split: the range and the chance below
    # the cut both come from them
    residuals: np.ndarray = field(repr=False)


class ModelTrainer:
    """Select by cross-validation, calibrate the interval, evaluate once on the test split, save.

    The quality gate is part of the decision (``src.lifecycle.decision``), not of training."""

    def __init__(self, config: ModelTrainerConfig) -> None:
        self.config = config

    def run(self, data: DataTransformationArtifact) -> ModelTrainerArtifact:
        cfg = self.config
        folds = KFold(n_splits=cfg.cv_folds, shuffle=True, random_state=cfg.seed)
        candidates = cfg.candidates or default_candidates(cfg.seed)
        results: list[CandidateResult] = []
        best: tuple[float, Candidate, BaseEstimator] | None = None
        for candidate in candidates:
            search = GridSearchCV(candidate.estimator, dict(candidate.grid) or {}, cv=folds, scoring="r2", n_jobs=cfg.n_jobs)
            search.fit(data.x_train, data.y_train)
            i = search.best_index_
            result = CandidateResult(
                name=candidate.name,
                cv_r2_mean=float(search.cv_results_["mean_test_score"][i]),
                cv_r2_std=float(search.cv_results_["std_test_score"][i]),
                params=dict(search.best_params_),
            )
            results.append(result)
            logger.info(
                "candidate %s: CV R2 %.4f +/- %.4f %s", result.name, result.cv_r2_mean, result.cv_r2_std, result.params
            )
            if best is None or result.cv_r2_mean > best[0]:
                best = (result.cv_r2_mean, candidate, search.best_estimator_)
        if best is None:
            raise QualityGateError("no candidate models were configured")
        _, chosen, model = best
        chosen_result = next(r for r in results if r.name == chosen.name)

        oof = cross_val_predict(clone(model), data.x_train, data.y_train, cv=folds, n_jobs=cfg.n_jobs)
        residuals = data.y_train - oof
        half_width = conformal_half_width(np.abs(residuals), cfg.interval_level)

        predictions = model.predict(data.x_test)
        test = evaluate(data.y_test, predictions, half_width)
        metrics: dict[str, Any] = {
            "model": chosen.name,
            "params": _jsonable(chosen_result.params),
            "test": test,
            "cv": {"r2_mean": chosen_result.cv_r2_mean, "r2_std": chosen_result.cv_r2_std, "folds": cfg.cv_folds},
            "interval": {"level": cfg.interval_level, "half_width": half_width, "method": "cv-conformal"},
            "candidates": {
                r.name: {"cv_r2_mean": r.cv_r2_mean, "cv_r2_std": r.cv_r2_std, "params": _jsonable(r.params)}
                for r in results
            },
            "rows": {"train": int(len(data.y_train)), "test": int(len(data.y_test))},
            "groups": group_metrics(data.test_frame, data.y_test, predictions, half_width),
            # the baseline that factors are stated against: the mean (unclipped) prediction on the training split
            "train_mean_prediction": float(np.mean(model.predict(data.x_train))),
        }
        model_path = cfg.artifacts_dir / "model.pkl"
        metrics_path = cfg.artifacts_dir / "metrics.json"
        atomic_write_bytes(model_path, dill.dumps(model))
        write_json(metrics_path, metrics)
        return ModelTrainerArtifact(
            model_path=model_path,
            metrics_path=metrics_path,
            model=model,
            model_name=chosen.name,
            metrics=metrics,
            candidates=tuple(results),
            interval_half_width=half_width,
            test_predictions=predictions,
            residuals=residuals,
        )


def conformal_half_width(abs_residuals: np.ndarray, level: float) -> float:
    """The conformal quantile: the ceil((n + 1) * level)-th smallest absolute residual."""
    n = len(abs_residuals)
    rank = math.ceil((n + 1) * level)
    if rank > n:
        raise QualityGateError(f"{n} training rows are too few for a {level:.0%} interval")
    return float(np.sort(abs_residuals)[rank - 1])


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, half_width: float) -> dict[str, float]:
    covered = np.abs(y_true - y_pred) <= half_width
    return {
        "r2": float(r2_score(y_true, y_pred)),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "bias": float(np.mean(np.asarray(y_pred) - np.asarray(y_true))),  # mean predicted minus actual
        "rmse": float(math.sqrt(mean_squared_error(y_true, y_pred))),
        "interval_coverage": float(covered.mean()),
        "interval_width": 2.0 * half_width,
    }


def _jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, (int, float, str, bool)) or v is None else repr(v)) for k, v in params.items()}

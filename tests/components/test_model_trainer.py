import json

import numpy as np
import pytest

from src.components.data_ingestion import DataIngestion, DataIngestionConfig
from src.components.data_transformation import DataTransformation, DataTransformationConfig
from src.components.model_trainer import (
    ModelTrainer,
    ModelTrainerConfig,
    QualityGateError,
    conformal_half_width,
    default_candidates,
)


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    directory = tmp_path_factory.mktemp("trainer")
    ingested = DataIngestion(DataIngestionConfig(artifacts_dir=directory, synthetic_rows=300)).run()
    return directory, DataTransformation(DataTransformationConfig(artifacts_dir=directory)).run(ingested)


def test_candidates_cover_linear_regularised_forest_boosting_knn():
    names = {c.name for c in default_candidates(0)}
    assert {"linear_regression", "ridge", "random_forest", "gradient_boosting", "knn"} <= names


def test_best_by_cv_with_metrics_file(transformed):
    directory, data = transformed
    picks = tuple(c for c in default_candidates(42) if c.name in ("ridge", "knn"))
    out = ModelTrainer(ModelTrainerConfig(artifacts_dir=directory, cv_folds=3, candidates=picks, n_jobs=1)).run(data)
    best = max(out.candidates, key=lambda c: c.cv_r2_mean)
    assert out.model_name == best.name
    metrics = json.loads(out.metrics_path.read_text())
    assert set(metrics["test"]) >= {"r2", "mae", "rmse", "interval_coverage"}
    assert set(metrics["cv"]) >= {"r2_mean", "r2_std"} and metrics["model"] == out.model_name
    assert metrics["cv"]["r2_mean"] == pytest.approx(best.cv_r2_mean)
    assert out.model_path.is_file() and 0 < metrics["test"]["interval_coverage"] <= 1


def test_conformal_half_width_uses_the_finite_sample_rank():
    residuals = np.arange(1, 20, dtype=float)  # 19 residuals: rank ceil(20 * 0.9) = 18
    assert conformal_half_width(residuals, 0.9) == 18.0
    with pytest.raises(QualityGateError, match="too few"):
        conformal_half_width(np.ones(5), 0.9)

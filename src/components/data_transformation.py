"""Transformation: a ColumnTransformer built from the schema, fitted on the training split only."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import dill
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from src.components.data_ingestion import DataIngestionArtifact
from src.schema import CATEGORICAL_FEATURES, FEATURE_NAMES, NUMERIC_FEATURES, TARGET, SchemaError
from src.storage import atomic_write_bytes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataTransformationConfig:
    artifacts_dir: Path
    exclude: tuple[str, ...] = ()  # features the model must not see (the preprocessor drops them)


@dataclass(frozen=True)
class DataTransformationArtifact:
    preprocessor_path: Path
    preprocessor: ColumnTransformer
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_frame: pd.DataFrame  # the untransformed test split (features and target), for reports


def check_excluded(exclude: tuple[str, ...]) -> None:
    """Excluded features must be schema features, and at least one feature must remain."""
    unknown = sorted(set(exclude) - set(FEATURE_NAMES))
    if unknown:
        raise SchemaError(f"cannot exclude unknown feature(s) {', '.join(unknown)}; features: {', '.join(FEATURE_NAMES)}")
    if set(FEATURE_NAMES) <= set(exclude):
        raise SchemaError("cannot exclude every feature: the model needs at least one")


def build_preprocessor(exclude: tuple[str, ...] = ()) -> ColumnTransformer:
    """Numeric: median impute, standardise. Categorical: most-frequent impute, one-hot (unknown -> zeros).

    Features in ``exclude`` are dropped (the ColumnTransformer's remainder): the model never sees them,
    while callers still pass, and validate, every feature of the schema.
    """
    check_excluded(exclude)
    numeric_features = [f.name for f in NUMERIC_FEATURES if f.name not in exclude]
    categorical_features = [f for f in CATEGORICAL_FEATURES if f.name not in exclude]
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            (
                "one_hot",
                OneHotEncoder(
                    categories=[list(f.categories) for f in categorical_features],
                    handle_unknown="ignore",
                    sparse_output=False,
                ),
            ),
        ]
    )
    transformers = []
    if numeric_features:
        transformers.append(("numeric", numeric, numeric_features))
    if categorical_features:
        transformers.append(("categorical", categorical, [f.name for f in categorical_features]))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)


class DataTransformation:
    """Fit the preprocessor on the training split and save it with dill."""

    def __init__(self, config: DataTransformationConfig) -> None:
        self.config = config

    def run(self, ingested: DataIngestionArtifact) -> DataTransformationArtifact:
        preprocessor = build_preprocessor(self.config.exclude)
        features = list(FEATURE_NAMES)
        x_train = preprocessor.fit_transform(ingested.train[features])
        x_test = preprocessor.transform(ingested.test[features])
        path = self.config.artifacts_dir / "preprocessor.pkl"
        atomic_write_bytes(path, dill.dumps(preprocessor))
        logger.info(
            "preprocessor: %d features in (%d excluded), %d columns out",
            len(features),
            len(self.config.exclude),
            x_train.shape[1],
        )
        return DataTransformationArtifact(
            preprocessor_path=path,
            preprocessor=preprocessor,
            x_train=np.asarray(x_train, dtype=float),
            y_train=ingested.train[TARGET.name].to_numpy(dtype=float),
            x_test=np.asarray(x_test, dtype=float),
            y_test=ingested.test[TARGET.name].to_numpy(dtype=float),
            test_frame=ingested.test,
        )

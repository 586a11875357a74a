"""Compiling a fitted preprocessor and model into plain lookups, so one prediction needs no pandas.

At load, the fitted ColumnTransformer is read once into its constants: for each score, its output column
and the scaler's mean and scale; for each categorical value, its one-hot column. A row is then built with
the very operations scikit-learn uses (``(x - mean) / scale``; a 1.0 in the category's column), so it is
bit-identical to ``preprocessor.transform``. For a linear model the coefficients fold further into one
number per category and one slope per score (``AdditiveScorer``); tree models get the built row as a NumPy
array (``VectorScorer``). Other models (k-NN, whose answer jumps at distance ties) and any preprocessor of
another shape are served by the full pipeline (``PipelineScorer``).

Nothing is assumed: a compiled scorer is used only if it reproduces the scikit-learn pipeline to within
1e-9 on the given rows and on random valid students; otherwise the full pipeline serves.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingRegressor,
    HistGradientBoostingRegressor,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import (
    ARDRegression,
    BayesianRidge,
    ElasticNet,
    ElasticNetCV,
    HuberRegressor,
    Lars,
    LarsCV,
    Lasso,
    LassoCV,
    LassoLars,
    LassoLarsCV,
    LassoLarsIC,
    LinearRegression,
    OrthogonalMatchingPursuit,
    Ridge,
    RidgeCV,
    SGDRegressor,
    TheilSenRegressor,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeRegressor

from src.answers.kernels import Additive, compute
from src.schema import BACKGROUND_FEATURES, CATEGORICAL_FEATURES, FEATURE_NAMES, NUMERIC_FEATURES
from src.validation import StudentColumns

logger = logging.getLogger(__name__)

TOLERANCE = 1e-9
RANDOM_CHECKS = 500

Record = Mapping[str, Any]
_CATEGORIES = {f.name: f.categories for f in CATEGORICAL_FEATURES}


class Scorer(Protocol):
    kind: str

    def score_columns(self, students: StudentColumns) -> np.ndarray: ...


class PipelineScorer:
    """The reference: scikit-learn's transform and predict on a DataFrame."""

    kind = "pipeline"

    def __init__(self, preprocessor: Any, model: Any) -> None:
        self.preprocessor = preprocessor
        self.model = model

    def score_frame(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.model.predict(self.preprocessor.transform(frame[list(FEATURE_NAMES)])), dtype=float)

    def score_columns(self, students: StudentColumns) -> np.ndarray:
        return self.score_frame(pd.DataFrame({name: students.values(name) for name in FEATURE_NAMES}))


class VectorScorer:
    """Builds the transformed row from the compiled constants, then calls the model on a NumPy array."""

    kind = "vector"

    def __init__(self, layout: Layout, model: Any) -> None:
        self.layout = layout
        self.model = model

    def transform_columns(self, students: StudentColumns) -> np.ndarray:
        """The transformed rows, built from the compiled constants as scikit-learn builds them, column by column."""
        n = students.size
        x = np.zeros((n, self.layout.width))
        for name, column, mean, scale in self.layout.numeric:
            x[:, column] = (students.numbers[name] - mean) / scale
        rows = np.arange(n)
        for name, columns in self.layout.categorical:
            by_code = np.array([columns[c] for c in _CATEGORIES[name]], dtype=np.int64)
            x[rows, by_code[students.codes[name]]] = 1.0
        return x

    def score_columns(self, students: StudentColumns) -> np.ndarray:
        return np.asarray(self.model.predict(self.transform_columns(students)), dtype=float)


class AdditiveScorer:
    """score = intercept + one number per category + slope * score, for models linear in their inputs."""

    kind = "additive"

    def __init__(self, intercept: float, contributions: dict[str, dict[str, float]], slopes: dict[str, float]) -> None:
        self.intercept = intercept
        self.contributions = contributions
        self.slopes = slopes
        # every category's term in one flat table, each feature's block in schema order and indexed by the
        # schema's category codes (StudentColumns.code_matrix) after adding the block's offset; a feature the
        # model was trained without (--exclude-features) adds 0.0, which changes no sum
        tables = [[contributions.get(f.name, {}).get(c, 0.0) for c in f.categories] for f in CATEGORICAL_FEATURES]
        self.category_terms = np.array([t for table in tables for t in table], dtype=float)
        self.offsets = np.cumsum([0, *map(len, tables[:-1])], dtype=np.intp)
        self.slopes_in_order = np.array([slopes.get(f.name, 0.0) for f in NUMERIC_FEATURES], dtype=float)
        self.additive = self.centred(np.zeros(len(FEATURE_NAMES)))  # the terms themselves (each less 0.0)

    def terms(self, students: StudentColumns) -> np.ndarray:
        """Each feature's term for each student: an (n, 7) array, columns in schema order (categories, then scores)."""
        return self.split(students, self.additive)[1]

    def score_columns(self, students: StudentColumns) -> np.ndarray:
        """The intercept, then each term in schema order, added one after the other (the very additions of a
        student scored alone, in the same order)."""
        return self.split(students, self.additive)[0]

    def split(self, students: StudentColumns, additive: Additive) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One compiled pass over the students (``src.answers.kernels.compute``): the unclipped scores, an (n, 7)
        array of the terms less ``additive.centres`` (schema order) and the background details' part of each row
        (the first ``len(BACKGROUND_FEATURES)`` columns added left to right)."""
        done = compute(students=students, additive=additive, background_features=len(BACKGROUND_FEATURES))
        return done.raw, done.contributions, done.background  # type: ignore[return-value]

    def centred(self, centres: np.ndarray) -> Additive:
        """The constants of the compiled pass with contributions measured from ``centres`` (schema order)."""
        return Additive(self.category_terms, self.offsets, self.slopes_in_order, self.intercept, centres)


@dataclass(frozen=True)
class Layout:
    """The fitted preprocessor's constants: output width, score columns with scaling, category columns."""

    width: int
    numeric: tuple[tuple[str, int, float, float], ...]  # (feature, column, mean, scale)
    categorical: tuple[tuple[str, dict[str, int]], ...]  # (feature, {category: column})


def read_layout(preprocessor: Any) -> Layout:
    """Read the constants of a preprocessor shaped like ``build_preprocessor()``'s; ValueError otherwise."""
    if not isinstance(preprocessor, ColumnTransformer):
        raise ValueError(f"preprocessor is a {type(preprocessor).__name__}, not a ColumnTransformer")
    numeric: list[tuple[str, int, float, float]] = []
    categorical: list[tuple[str, dict[str, int]]] = []
    width = 0
    for name, transformer, columns in preprocessor.transformers_:
        if transformer == "drop" or name == "remainder":
            continue
        steps = transformer.steps if isinstance(transformer, Pipeline) else [("only", transformer)]
        if any(not isinstance(step, (SimpleImputer, StandardScaler, OneHotEncoder)) for _, step in steps):
            raise ValueError(f"transformer {name!r} has steps the fast path does not know")
        last = steps[-1][1]
        start = preprocessor.output_indices_[name].start
        if isinstance(last, StandardScaler):
            means = last.mean_ if last.with_mean else np.zeros(len(columns))
            scales = last.scale_ if last.with_std else np.ones(len(columns))
            for j, feature in enumerate(columns):
                numeric.append((feature, start + j, float(means[j]), float(scales[j])))
        elif isinstance(last, OneHotEncoder):
            if last.drop_idx_ is not None:
                raise ValueError("one-hot encoding with dropped categories")
            offset = start
            for feature, categories in zip(columns, last.categories_, strict=True):
                categorical.append((feature, {str(c): offset + i for i, c in enumerate(categories)}))
                offset += len(categories)
        else:
            raise ValueError(f"transformer {name!r} does not end in a scaler or a one-hot encoder")
        width = max(width, preprocessor.output_indices_[name].stop)
    covered = {f for f, *_ in numeric} | {f for f, _ in categorical}
    if not covered or not covered <= set(FEATURE_NAMES):
        raise ValueError(f"preprocessor covers {sorted(covered)}, not features of the schema")
    # Features the preprocessor drops (trained without them) add nothing: the compiled row ignores them too.
    encoded = dict(categorical)
    for feature in CATEGORICAL_FEATURES:
        if feature.name not in encoded:
            continue
        known = encoded[feature.name]
        if not set(feature.categories) <= known.keys():
            raise ValueError(f"{feature.name}: the encoder does not know every category of the schema")
    return Layout(width, tuple(numeric), tuple(categorical))


def compile_scorer(preprocessor: Any, model: Any, check_frame: pd.DataFrame | None = None, seed: int = 0) -> Scorer:
    """The fastest scorer that reproduces the scikit-learn pipeline within TOLERANCE, else the pipeline."""
    reference = PipelineScorer(preprocessor, model)
    checks = random_students(RANDOM_CHECKS, seed)
    if check_frame is not None and len(check_frame):
        checks = pd.concat([check_frame[list(FEATURE_NAMES)], checks], ignore_index=True)
    columns = StudentColumns.from_frame(checks)
    expected = reference.score_frame(checks)  # every model predicts its checks once, compiled or not
    if not np.all(np.isfinite(expected)):
        raise ValueError("the model predicts non-finite scores for valid students")
    try:
        layout = read_layout(preprocessor)
    except (AttributeError, KeyError, ValueError) as err:
        logger.info("fast path unavailable (%s): serving with the full scikit-learn pipeline", err)
        return reference
    candidates: list[Scorer] = []
    if _is_linear(model):
        candidates.append(_fold_linear(layout, model))
    if isinstance(model, _TREE_MODELS) or _is_linear(model):
        candidates.append(VectorScorer(layout, model))
    if not candidates:
        logger.info("no fast path for %s: serving with the full scikit-learn pipeline", type(model).__name__)
        return reference
    for scorer in candidates:
        error = float(np.max(np.abs(scorer.score_columns(columns) - expected)))
        if error <= TOLERANCE:
            logger.info("fast path: %s scorer (max abs difference %.2e on %d students)", scorer.kind, error, columns.size)
            return scorer
        logger.warning("%s scorer rejected: max abs difference %.2e", scorer.kind, error)
    return reference


def random_students(n: int, seed: int = 0) -> pd.DataFrame:
    """Uniformly random valid students (every category, any score in range, fractions included)."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for feature in CATEGORICAL_FEATURES:
        data[feature.name] = rng.choice(np.asarray(feature.categories, dtype=object), size=n)
    for feature in NUMERIC_FEATURES:
        values = rng.uniform(feature.minimum, feature.maximum, size=n)
        values[: n // 2] = np.rint(values[: n // 2])
        values[n // 2 : 3 * n // 4] = np.rint(values[n // 2 : 3 * n // 4] * 2) / 2  # halves sit on tree splits
        data[feature.name] = values
    return pd.DataFrame(data)[list(FEATURE_NAMES)]


_TREE_MODELS = (
    DecisionTreeRegressor,
    RandomForestRegressor,
    ExtraTreesRegressor,
    GradientBoostingRegressor,
    HistGradientBoostingRegressor,
)


# Public scikit-learn regressors whose prediction is ``X @ coef_ + intercept_`` (no link function). The private
# base class they share is not used: it may move in any release. The fold is verified at load in any case.
_LINEAR_MODELS = (
    ARDRegression,
    BayesianRidge,
    ElasticNet,
    ElasticNetCV,
    HuberRegressor,
    Lars,
    LarsCV,
    Lasso,
    LassoCV,
    LassoLars,
    LassoLarsCV,
    LassoLarsIC,
    LinearRegression,
    OrthogonalMatchingPursuit,
    Ridge,
    RidgeCV,
    SGDRegressor,
    TheilSenRegressor,
)


def _is_linear(model: Any) -> bool:
    return isinstance(model, _LINEAR_MODELS) and np.ndim(model.coef_) == 1 and np.ndim(model.intercept_) == 0


def _fold_linear(layout: Layout, model: Any) -> AdditiveScorer:
    coef = np.asarray(model.coef_, dtype=float)
    intercept = float(model.intercept_)
    slopes: dict[str, float] = {}
    for name, column, mean, scale in layout.numeric:
        slopes[name] = float(coef[column] / scale)
        intercept -= float(coef[column] * mean / scale)
    contributions = {
        name: {category: float(coef[column]) for category, column in columns.items()} for name, columns in layout.categorical
    }
    return AdditiveScorer(intercept, contributions, slopes)

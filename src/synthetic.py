"""A seeded generator of realistic, entirely synthetic students.

It is the embedded default cohort (demos, a fresh machine, fast tests). The proportions and effects are
set to resemble the public "Students Performance in Exams" data: about half the students are female,
group C is the largest group, most have standard lunch and no test preparation; reading and writing scores
correlate strongly with each other and with math; boys score higher in math than their reading and writing
would suggest, standard lunch and test preparation help. No real student is behind any row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from src.schema import CATEGORICAL_FEATURES, COLUMNS, TARGET

# Share of each category, in the schema's category order.
_SHARES: dict[str, tuple[float, ...]] = {
    "gender": (0.52, 0.48),
    "race_ethnicity": (0.09, 0.19, 0.32, 0.26, 0.14),
    "parental_level_of_education": (0.18, 0.20, 0.22, 0.22, 0.12, 0.06),
    "lunch": (0.65, 0.35),
    "test_preparation_course": (0.64, 0.36),
}

# Effect on the student's general attainment, in score points, by category (schema order).
_ATTAINMENT: dict[str, tuple[float, ...]] = {
    "race_ethnicity": (-4.0, -2.0, 0.0, 2.0, 4.0),
    "parental_level_of_education": (-2.5, -2.0, 0.5, 1.5, 3.0, 4.0),
    "lunch": (3.0, -5.0),
}


def generate_students(n: int, seed: int = 0) -> pd.DataFrame:
    """Return ``n`` synthetic students with the schema's columns (snake_case), scores as integers 0-100."""
    if n < 1:
        raise ValueError(f"n must be a positive number of students, got {n}")
    rng = np.random.default_rng(seed)
    frame: dict[str, np.ndarray] = {}
    codes: dict[str, np.ndarray] = {}
    for feature in CATEGORICAL_FEATURES:
        shares = np.asarray(_SHARES[feature.name])
        codes[feature.name] = rng.choice(len(feature.categories), size=n, p=shares / shares.sum())
        frame[feature.name] = np.asarray(feature.categories, dtype=object)[codes[feature.name]]

    attainment = 63.5 + 13.5 * rng.standard_normal(n)
    for name, effects in _ATTAINMENT.items():
        attainment += np.asarray(effects)[codes[name]]
    female = codes["gender"] == 0
    prepared = codes["test_preparation_course"] == 1

    reading = attainment + 3.5 * female + 5.0 * prepared + 3.0 * rng.standard_normal(n) + 2.0
    writing = attainment + 5.0 * female + 7.5 * prepared + 3.0 * rng.standard_normal(n) + 1.0
    math = (
        0.45 * reading
        + 0.45 * writing
        + 12.0 * ~female
        - 4.0 * prepared
        + np.where(codes["lunch"] == 0, 2.5, -2.5)
        + 5.2 * rng.standard_normal(n)
        - 2.0
    )
    frame["reading_score"] = _as_score(reading)
    frame["writing_score"] = _as_score(writing)
    frame[TARGET.name] = _as_score(math)
    return pd.DataFrame(frame)[list(COLUMNS)]


def _as_score(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 100).astype(int)

import json

import numpy as np
import pandas as pd
import pytest

from src.answers.bands import BAND_NAMES, NEEDS_SUPPORT, ON_TRACK, UNCERTAIN, Bands
from src.answers.factors import NoFactors, build_factors
from src.answers.fast_path import random_students
from src.answers.model import PredictPipeline
from src.schema import FEATURE_NAMES
from src.validation import StudentColumns


@pytest.fixture(scope="module")
def pipeline(trained):
    loaded = PredictPipeline.from_artifacts(trained.manifest_path.parent)
    assert loaded.scorer.kind == "additive"  # the session's model is linear: these tests are about that case
    return loaded


def _students(trained, n_random=1000):
    test_rows = trained.ingestion.test[list(FEATURE_NAMES)].to_dict("records")
    return test_rows + random_students(n_random, seed=3).to_dict("records")


def test_baseline_plus_factors_is_the_unclipped_score_for_every_test_row_and_random_students(pipeline, trained):
    students = _students(trained)
    assert len(students) == len(trained.ingestion.test) + 1000
    unclipped = pipeline.reference.score_frame(pd.DataFrame(students))  # the scikit-learn pipeline's own prediction
    many = pipeline.factors.columns(StudentColumns.from_records(students))
    assert many.shape == (len(students), 7)
    assert np.max(np.abs(pipeline.factors.baseline + many.sum(axis=1) - unclipped)) <= 1e-6
    for student, expected in zip(students[:200], unclipped[:200], strict=True):  # a batch of one each
        one = pipeline.factors.columns(StudentColumns.from_records([student]))[0]
        assert abs(pipeline.factors.baseline + one.sum() - expected) <= 1e-6


def test_baseline_is_the_mean_prediction_on_the_training_split(pipeline, trained):
    train_rows = trained.ingestion.train[list(FEATURE_NAMES)]
    mean_prediction = float(np.mean(pipeline.reference.score_frame(train_rows)))
    assert abs(pipeline.factors.baseline - mean_prediction) <= 1e-9
    assert trained.manifest["explanation"]["baseline"] == pytest.approx(mean_prediction, abs=1e-9)


def test_a_model_without_a_recorded_training_summary_has_no_factors_and_says_why(pipeline):
    manifest = {k: v for k, v in pipeline.manifest.items() if k != "explanation"}
    factors = build_factors(pipeline.scorer, manifest)
    assert isinstance(factors, NoFactors) and "retrain" in factors.reason


def test_a_recorded_baseline_that_disagrees_with_the_model_turns_factors_off(pipeline):
    manifest = json.loads(json.dumps(pipeline.manifest))
    manifest["explanation"]["baseline"] += 0.01
    factors = build_factors(pipeline.scorer, manifest)
    assert isinstance(factors, NoFactors) and "does not match" in factors.reason


@pytest.mark.parametrize(
    ("low", "high", "band"),
    [
        (30.0, 49.9, NEEDS_SUPPORT),  # the whole range below the cut
        (41.1, 50.0, UNCERTAIN),  # touching the cut from below is not below it
        (50.0, 67.8, ON_TRACK),  # starting at the cut is at or above it
        (49.9, 67.7, UNCERTAIN),
        (0.0, 0.0, NEEDS_SUPPORT),
        (100.0, 100.0, ON_TRACK),
        (50.0, 50.0, ON_TRACK),
    ],
)
def test_band_rule_at_the_edges_of_the_cut(low, high, band):
    bands = Bands(50.0)
    assert BAND_NAMES[int(bands.codes(low, high))] == band  # one range, as a scalar
    assert bands.names(np.array([low]), np.array([high])).tolist() == [band]
    assert bands.payload(band) == {"name": band, "label": bands.labels[band], "cut": 50.0, "policy": "all_details"}


def test_band_labels_are_plain_words():
    bands = Bands(45.5)
    assert bands.labels == {
        NEEDS_SUPPORT: "very likely below 45.5",
        UNCERTAIN: "could be either side of 45.5",
        ON_TRACK: "very likely 45.5 or above",
    }

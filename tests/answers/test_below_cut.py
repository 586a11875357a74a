import dataclasses

import numpy as np
import pytest

from src.answers.bands import Bands, coded_bands_without_background
from src.answers.below_cut import MAX_RESIDUALS, NoBelowCut, below_cut_probability, build_below_cut, distribution_record
from src.answers.columns import answers_frame
from src.answers.factors import background_points
from src.answers.fast_path import random_students
from src.answers.model import PredictPipeline
from src.schema import FEATURE_NAMES
from src.validation import StudentColumns
from src.web.answers import batch_answer, single_answer


@pytest.fixture(scope="module")
def pipeline(trained):
    return PredictPipeline.from_artifacts(trained.manifest_path.parent)


def test_the_chance_is_the_share_of_residuals_below_the_gap_with_ties_split_in_half():
    residuals = np.array([-10.0, -5.0, 0.0, 0.0, 5.0])  # n = 5
    # cut - raw = 0: two residuals below, two equal -> (2 + (2 + 1) / 2) / 6
    assert below_cut_probability(np.array([50.0]), residuals, 50.0).tolist() == [3.5 / 6]
    assert below_cut_probability(np.array([100.0]), residuals, 50.0).tolist() == [0.5 / 6]  # never 0
    assert below_cut_probability(np.array([0.0]), residuals, 50.0).tolist() == [5.5 / 6]  # never 1
    assert below_cut_probability(np.array([52.0]), residuals, 50.0).tolist() == [2.5 / 6]


def test_many_scores_at_once_count_ties_as_each_one_alone():
    rng = np.random.default_rng(5)
    for _ in range(200):
        residuals = np.sort(rng.integers(-6, 6, rng.integers(1, 40)).astype(float))  # many ties
        raw = np.concatenate(
            [
                50.0 - residuals[rng.integers(0, len(residuals), 30)],  # gaps equal to a residual
                rng.normal(50, 8, 30),
                [np.nan, np.inf, -np.inf, 50.0 - residuals[-1] - 1],
            ]
        )
        gap = 50.0 - raw
        below = np.searchsorted(residuals, gap, side="left")
        at_most = np.searchsorted(residuals, gap, side="right")
        expected = (below + 0.5 * (at_most - below + 1)) / (len(residuals) + 1)
        assert np.array_equal(below_cut_probability(raw, residuals, 50.0), expected, equal_nan=True)
    residuals, raw = np.array([-1.0, 0.0, np.nan]), np.array([np.nan, 1.0])  # NaN sorts last, on either side
    assert below_cut_probability(raw, residuals, 50.0).tolist() == [0.75, 0.625]


def test_the_chance_falls_as_the_predicted_score_rises(pipeline):
    raw = np.linspace(-20, 120, 2001)
    chance = pipeline.below_cut.many(raw, 50.0)
    assert np.all(np.diff(chance) <= 0) and chance[0] > 0.99 and chance[-1] < 0.01
    assert np.all((chance > 0) & (chance < 1))
    assert [pipeline.below_cut.many(np.array([r]), 50.0)[0] for r in raw.tolist()] == chance.tolist()  # one at a time


def test_training_records_the_sorted_out_of_fold_residuals_in_the_manifest(trained):
    record = trained.manifest["predictive_distribution"]
    residuals = np.asarray(record["residuals"])
    assert record["rows"] == len(residuals) == len(trained.trainer.residuals)
    assert np.all(np.diff(residuals) >= 0)
    # the 90 % range's half-width is a quantile of the same residuals' absolute values
    half = trained.manifest["interval"]["half_width"]
    assert half in np.abs(residuals).tolist()


def test_a_large_training_split_is_recorded_as_evenly_spaced_quantiles():
    residuals = np.random.default_rng(0).normal(0, 5, MAX_RESIDUALS * 3)
    record = distribution_record(residuals)
    assert record["rows"] == MAX_RESIDUALS * 3 and len(record["residuals"]) == MAX_RESIDUALS
    full = below_cut_probability(np.array([45.0, 50.0, 55.0]), np.sort(residuals), 50.0)
    sampled = below_cut_probability(np.array([45.0, 50.0, 55.0]), np.asarray(record["residuals"]), 50.0)
    assert np.abs(full - sampled).max() <= 1e-3


@pytest.mark.parametrize(
    "record, reason",
    [
        (None, "trained before its residuals were recorded"),
        ({"residuals": [3.0, 1.0, 2.0]}, "not a sorted list"),
        ({"residuals": ["a", "b"]}, "unreadable"),
    ],
)
def test_a_manifest_without_usable_residuals_gives_the_reason(record, reason):
    loaded = build_below_cut({} if record is None else {"predictive_distribution": record})
    assert isinstance(loaded, NoBelowCut) and reason in loaded.reason


def test_every_answer_carries_the_chance_and_the_band_without_background(pipeline, student):
    bands = Bands(50.0)
    answer, answers = single_answer(pipeline, student, bands)
    assert answer["below_cut_probability"] == round(float(pipeline.below_cut.many(answers.predictions.raw, 50.0)[0]), 3)
    assert answer["band_without_background"] in bands.labels
    frame = answers_frame(pipeline, [student], support_cut=50.0)
    assert round(float(frame["below_cut_probability"].iat[0]), 3) == answer["below_cut_probability"]
    assert frame["band_without_background"].iat[0] == answer["band_without_background"]


def test_the_band_without_background_is_the_answer_less_the_four_background_contributions(pipeline):
    students = random_students(3000, seed=11).to_dict("records")
    bands = Bands(50.0)
    answer = batch_answer(pipeline, students, bands)
    contributions = pipeline.factors.columns(StudentColumns.from_records(students))
    raw = answer.predictions.raw
    centred = raw - contributions[:, :4].sum(axis=1)  # gender, group, parents' education, lunch
    assert list(FEATURE_NAMES[:4]) == ["gender", "race_ethnicity", "parental_level_of_education", "lunch"]
    half = pipeline.half_width
    expected = bands.names(np.round(np.clip(centred - half, 0, 100), 1), np.round(np.clip(centred + half, 0, 100), 1))
    assert answer.answers.without_background.tolist() == expected.tolist()
    assert (coded_bands_without_background(bands, raw, background_points(contributions), half).text() == expected).all()
    flipped = answer.answers.without_background != answer.bands
    assert flipped.any() and not flipped.all()  # background decides the band for some students, not for most
    # a student whose background contributions are all zero keeps their band
    zero = coded_bands_without_background(bands, raw, np.zeros(len(raw)), half).text()
    assert (zero == answer.bands).all()


def test_a_model_without_exact_factors_omits_the_band_without_background_with_the_reason(pipeline, student):
    from src.answers.factors import NoFactors

    plain = dataclasses.replace(pipeline, factors=NoFactors("no exact split"))
    answer, _ = single_answer(plain, student, Bands(50.0))
    assert "band_without_background" not in answer and answer["factors_reason"] == "no exact split"
    assert "below_cut_probability" in answer
    item = batch_answer(plain, [student], Bands(50.0)).items[0]
    assert "band_without_background" not in item and "below_cut_probability" in item
    assert (answers_frame(plain, [student], support_cut=50.0)["band_without_background"] == "").all()


def test_a_model_without_residuals_omits_the_chance_with_the_reason(pipeline, student):
    older = dataclasses.replace(pipeline, below_cut=NoBelowCut("trained before"))
    answer, _ = single_answer(older, student, Bands(50.0))
    assert "below_cut_probability" not in answer and answer["below_cut_reason"] == "trained before"
    assert answers_frame(older, [student], support_cut=50.0)["below_cut_probability"].isna().all()

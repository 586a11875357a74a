"""The compiled arithmetic: Python's rounding exactly, sums in the order written, one compiled version each."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from src.answers import kernels
from src.answers.arrays import round_as_python
from src.answers.bands import SCORES_ONLY, Bands, reported_band_codes
from src.answers.below_cut import below_cut_probability
from src.answers.columns import answers_frame, compute_answers
from src.answers.factors import background_points
from src.answers.fast_path import AdditiveScorer
from src.answers.model import PredictPipeline
from src.schema import BACKGROUND_FEATURES, CATEGORICAL_FEATURES, FEATURE_NAMES, NUMERIC_FEATURES
from src.validation import StudentColumns


def _near_halves(rng: np.random.Generator, decimals: int, n: int) -> np.ndarray:
    """Values whose scaled product lands on or next to a half: where a plain ``rint(v * 10**d) / 10**d`` errs."""
    halves = (rng.integers(-(10**6), 10**6, n) + 0.5) / 10.0**decimals
    return np.concatenate([halves, np.nextafter(halves, np.inf), np.nextafter(halves, -np.inf)])


@pytest.mark.parametrize("decimals", [0, 1, 3, 8])
def test_rounding_is_pythons_round_on_and_around_every_half(decimals):
    rng = np.random.default_rng(decimals)
    values = np.concatenate(
        [_near_halves(rng, decimals, 3000), rng.uniform(-120, 120, 3000), [0.0, -0.0, 0.15, 0.25, 2.675, 1e-9, -1e-9]]
    )
    got = round_as_python(values, decimals)
    expected = [round(v, decimals) for v in values.tolist()]
    assert got.tolist() == expected
    # the sign of a zero too (round(-0.04, 1) is -0.0, as Python writes it)
    assert [math.copysign(1, g) for g in got.tolist()] == [math.copysign(1, e) for e in expected]


def test_a_plain_scaled_rint_would_have_erred_on_these_values():
    # the cases the exact product decides: without it the test above could not fail
    values = np.array([0.15, 1.005, 2.675, 0.285])
    decimals = [1, 2, 2, 2]
    plain = [float(np.rint(v * 10.0**d) / 10.0**d) for v, d in zip(values.tolist(), decimals, strict=True)]
    python = [round(v, d) for v, d in zip(values.tolist(), decimals, strict=True)]
    assert plain != python
    rows = round_as_python(values.reshape(-1, 1), np.array(decimals).reshape(-1, 1)).ravel().tolist()
    assert rows == python


def test_rounding_rows_each_to_its_decimals_keeps_nan_and_infinities():
    values = np.array([[1.25, np.nan, np.inf], [0.0005, -np.inf, 12.3456789]])
    got = round_as_python(values, np.array([[1], [3]]))
    assert got[0, 0] == 1.2 and math.isnan(got[0, 1]) and got[0, 2] == np.inf
    assert got[1].tolist() == [round(0.0005, 3), -np.inf, 12.346]
    with pytest.raises(ValueError, match="3 decimals for 2 rows"):
        round_as_python(values, np.array([1, 2, 3]))


def _random_columns(n: int, seed: int = 0) -> StudentColumns:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            **{f.name: rng.choice(np.asarray(f.categories, dtype=object), n) for f in CATEGORICAL_FEATURES},
            **{f.name: np.round(rng.uniform(f.minimum, f.maximum, n), 1) for f in NUMERIC_FEATURES},
        }
    )[list(FEATURE_NAMES)]
    return StudentColumns.from_frame(frame)


def test_the_additive_sums_are_the_additions_written_in_schema_order():
    rng = np.random.default_rng(1)
    categories = {f.name: {c: float(rng.normal(0, 3)) for c in f.categories} for f in CATEGORICAL_FEATURES}
    slopes = {f.name: float(rng.normal(0.4, 0.1)) for f in NUMERIC_FEATURES}
    scorer = AdditiveScorer(31.7, categories, slopes)
    centres = rng.normal(0, 2, len(FEATURE_NAMES))
    students = _random_columns(500)
    raw, contributions, background = scorer.split(students, scorer.centred(centres))
    for i, record in enumerate(students):
        terms = [categories[f][record[f]] for f in FEATURE_NAMES if f in categories]
        terms += [slopes[f] * record[f] for f in FEATURE_NAMES if f in slopes]
        total = 31.7
        for term in terms:
            total += term  # Python's own additions, one after the other
        parts = [t - c for t, c in zip(terms, centres.tolist(), strict=True)]
        assert raw[i] == total
        assert contributions[i].tolist() == parts
        assert background[i] == ((parts[0] + parts[1]) + parts[2]) + parts[3]
    assert background.tolist() == background_points(contributions).tolist()
    assert scorer.score_columns(students).tolist() == raw.tolist()


def test_the_background_details_come_first_in_schema_order():
    # the compiled sums take the background part as the first columns of the contributions
    assert FEATURE_NAMES[: len(BACKGROUND_FEATURES)] == BACKGROUND_FEATURES


@pytest.fixture(scope="module")
def trained_pipeline(trained) -> PredictPipeline:
    return PredictPipeline.from_artifacts(trained.manifest_path.parent)


def test_each_compiled_function_keeps_one_version_whatever_the_callers_pass(trained_pipeline):
    kernels.warm_up()
    before = kernels.signatures()
    assert set(before.values()) == {1}, before
    students = _random_columns(40, seed=3)
    records = list(students)
    for bands in (None, Bands(50.0), Bands(50, SCORES_ONLY)):
        compute_answers(trained_pipeline, records[:1], bands)
        compute_answers(trained_pipeline, students, bands, with_factors=False)
    answers_frame(trained_pipeline, pd.DataFrame(records), support_cut=60)
    round_as_python([1, 2], 1)  # integers
    round_as_python(np.arange(6.0).reshape(2, 3)[:, ::2], np.int64(2))  # a strided view, a NumPy integer
    round_as_python(np.broadcast_to(np.float32(1.25), (3,)), 1)  # read-only, float32
    below_cut_probability([60, 70.5], [-3, 0, 4], 65)
    reported_band_codes(np.array([60.0, 70.0])[::-1], 9, 50.0, [1, 2])
    Bands(50).codes(np.array([[40, 55]]), np.array([[60.0, 70.0]]).T.T)
    frozen = pd.Series([60.0, 70.0]).to_numpy()  # pandas hands out read-only arrays
    frozen.flags.writeable = False
    below_cut_probability(frozen, frozen, 65.0)
    reported_band_codes(frozen, 5.0, 50.0, frozen)
    assert kernels.signatures() == before


def test_inputs_the_arrays_of_numpy_accepted_are_answered_or_refused_never_left_unwritten():
    assert below_cut_probability(np.array([60.0]), [], 65.0).tolist() == [0.5]  # no residual: the middle
    assert Bands(50).codes(np.array([40.0, 55.0, 45.0]), np.array(70.0)).tolist() == [1, 2, 1]  # broadcast
    with pytest.raises(ValueError, match="background parts for 3 scores"):
        reported_band_codes(np.array([60.0, 70.0, 80.0]), 5.0, 50.0, np.array([1.0]))
    with pytest.raises(ValueError, match="finite score"):
        kernels.compute(raw=np.array([60.0]), cut=float("nan"), residuals=np.zeros(3))
    # a negative zero neither from the rounding (Python keeps it) nor from the clipping (NumPy's maximum gave 0.0)
    assert math.copysign(1, float(round_as_python(-5e-07, 6))) == math.copysign(1, round(-5e-07, 6)) == -1
    done = kernels.compute(raw=np.array([-0.0]), minimum=0.0, maximum=100.0, half_width=0.0)
    assert [math.copysign(1, v) for v in done.numbers[:3, 0].tolist()] == [1, 1, 1]

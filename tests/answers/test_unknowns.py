"""Answers with background fields not known: every possible value counted, the range covering them all."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from src.answers.columns import compute_answers
from src.answers.model import PredictPipeline
from src.answers.unknowns import UnknownsUnavailable, predict_with_unknowns
from src.schema import FEATURE_NAMES, FEATURES_BY_NAME, MAY_BE_UNKNOWN


@pytest.fixture(scope="module")
def loaded(trained) -> PredictPipeline:
    return PredictPipeline.from_artifacts(trained.manifest_path.parent)


def test_only_background_fields_may_be_not_known():
    assert MAY_BE_UNKNOWN == ("gender", "race_ethnicity", "parental_level_of_education", "lunch")


@pytest.mark.parametrize("unknown", [("parental_level_of_education",), ("race_ethnicity", "lunch"), MAY_BE_UNKNOWN])
def test_score_is_the_share_weighted_average_and_the_range_covers_every_value(loaded, student, unknown):
    known = {k: v for k, v in student.items() if k not in unknown}
    answer = predict_with_unknowns(loaded, known, unknown)
    shares = loaded.manifest["explanation"]["feature_means"]
    combos = list(itertools.product(*(FEATURES_BY_NAME[n].categories for n in unknown)))
    assert answer.possibilities == len(combos)
    total = weight_sum = 0.0
    for combo in combos:  # one by one, each a batch of one
        record = {**known, **dict(zip(unknown, combo, strict=True))}
        out = loaded.predict([record])
        raw, low, high = float(out.raw[0]), float(out.low[0]), float(out.high[0])
        weight = float(np.prod([shares[n][v] for n, v in zip(unknown, combo, strict=True)]))
        total += weight * raw
        weight_sum += weight
        assert answer.low <= low and high <= answer.high  # every possible value's range lies inside
    assert answer.raw == pytest.approx(total / weight_sum, abs=1e-9)
    out = loaded.predict([student])  # the student as entered is one of the possibilities
    assert answer.low <= out.low[0] and out.high[0] <= answer.high


def test_factors_of_unknown_fields_are_zero_and_still_add_up(loaded, student):
    unknown = ("parental_level_of_education", "lunch")
    answer = predict_with_unknowns(loaded, {k: v for k, v in student.items() if k not in unknown}, unknown)
    assert answer.contributions is not None and list(answer.contributions) == list(FEATURE_NAMES)
    assert all(abs(answer.contributions[n]) <= 1e-9 for n in unknown)
    known_points = compute_answers(loaded, [student], None).contributions[0]
    for name in ("reading_score", "writing_score", "gender"):
        assert answer.contributions[name] == pytest.approx(known_points[FEATURE_NAMES.index(name)], abs=1e-9)
    assert loaded.factors.baseline + sum(answer.contributions.values()) == pytest.approx(answer.raw, abs=1e-6)


def test_actionable_fields_cannot_be_not_known(loaded, student):
    with pytest.raises(ValueError, match="may be not known"):
        predict_with_unknowns(loaded, {k: v for k, v in student.items() if k != "reading_score"}, ("reading_score",))


def test_a_model_without_recorded_shares_says_so(loaded, student):
    import dataclasses

    bare = dataclasses.replace(loaded, manifest={k: v for k, v in loaded.manifest.items() if k != "explanation"})
    with pytest.raises(UnknownsUnavailable, match="retrain"):
        predict_with_unknowns(bare, {k: v for k, v in student.items() if k != "lunch"}, ("lunch",))

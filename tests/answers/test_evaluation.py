import math

import numpy as np
import pytest

from src.answers.evaluation import (
    AT_OR_ABOVE,
    BELOW,
    Tally,
    add_group_tallies,
    band_promise,
    coverage_clearly_low,
    evaluation,
    group_summary,
    group_tally,
    outcome_columns,
    outcomes,
    policy_misses,
    promised,
    realized_coverage_low,
)
from src.components.group_metrics import group_metrics
from src.synthetic import generate_students


def test_outcomes_per_student_and_blank_real_scores_have_none():
    scores = np.array([60.0, 40.0, 55.0, 70.0])
    low, high = scores - 10, scores + 10
    bands = np.array(["on_track", "needs_support", "uncertain", "on_track"], dtype=object)
    real = np.array([65.0, 52.0, np.nan, 45.0])
    out = outcomes(scores, low, high, real, bands, cut=50.0)
    columns = outcome_columns(out)
    assert columns["real_math_score"].tolist() == [65.0, 52.0, None, 45.0]
    assert columns["prediction_minus_real"].tolist() == [-5.0, -12.0, None, 25.0]
    assert columns["inside_range"].tolist() == [True, False, None, False]
    # on track and really 65: right; needs support but really 52: wrong; uncertain: no claim; on track, 45: wrong
    assert columns["band_right"].tolist() == [True, False, None, False]


def test_tally_summary_matches_a_direct_computation():
    rng = np.random.default_rng(3)
    scores = rng.uniform(20, 90, 300)
    real = np.where(rng.random(300) < 0.2, np.nan, np.clip(scores + rng.normal(0, 8, 300), 0, 100))
    bands = rng.choice(np.array(["needs_support", "uncertain", "on_track"], dtype=object), 300)
    out = outcomes(scores, scores - 12, scores + 12, real, bands, cut=50.0)
    summary = Tally.of(out).summary()
    labeled = ~np.isnan(real)
    assert summary["students"] == labeled.sum()
    assert summary["mae"] == pytest.approx(np.mean(np.abs(scores - real)[labeled]))
    assert summary["bias"] == pytest.approx(np.mean((scores - real)[labeled]))
    assert summary["coverage"] == pytest.approx(np.mean((np.abs(scores - real) <= 12)[labeled]))
    for band in ("needs_support", "uncertain", "on_track"):
        mine = labeled & (bands == band)
        assert summary["bands"][band] == {
            BELOW: int((mine & (real < 50)).sum()),
            AT_OR_ABOVE: int((mine & (real >= 50)).sum()),
        }


def test_tallies_of_parts_add_up_to_the_tally_of_the_whole():
    rng = np.random.default_rng(4)
    scores = rng.uniform(0, 100, 200)
    real = rng.uniform(0, 100, 200)
    bands = rng.choice(np.array(["needs_support", "uncertain", "on_track"], dtype=object), 200)
    whole = Tally.of(outcomes(scores, scores - 9, scores + 9, real, bands, 55.0))
    parts = [
        Tally.of(outcomes(scores[a:b], scores[a:b] - 9, scores[a:b] + 9, real[a:b], bands[a:b], 55.0))
        for a, b in ((0, 70), (70, 71), (71, 200))
    ]
    summed = parts[0] + parts[1] + parts[2]
    assert summed.students == whole.students and summed.inside == whole.inside and summed.bands == whole.bands
    assert summed.absolute_error == pytest.approx(whole.absolute_error)
    assert Tally.from_dict(summed.as_dict()) == summed


@pytest.mark.parametrize(("inside", "flagged"), [(27, False), (20, False), (19, True), (5, True)])
def test_the_flag_is_a_one_sided_binomial_test_at_one_in_a_hundred(inside, flagged):
    assert coverage_clearly_low(27, inside, 0.9) is flagged
    p = sum(math.comb(27, k) * 0.9**k * 0.1 ** (27 - k) for k in range(inside + 1))
    assert (p < 0.01) is flagged


def test_production_rule_needs_200_students_and_coverage_below_085():
    assert not realized_coverage_low(199, 100)
    assert realized_coverage_low(200, 169)
    assert not realized_coverage_low(200, 170)


def test_band_promise_is_the_test_splits_band_table_for_each_whole_cut():
    y = np.array([30.0, 49.9, 50.0, 80.0])
    raw = np.array([35.0, 60.0, 45.0, 85.0])
    table = band_promise(y, raw, 5.0)
    at50 = table["by_cut"]["50"]
    assert at50["needs_support"] == {BELOW: 1, AT_OR_ABOVE: 0}  # 30-40: below 50
    assert at50["on_track"] == {BELOW: 1, AT_OR_ABOVE: 1}  # 55-65 (really 49.9), 80-90 (really 80)
    assert at50["uncertain"] == {BELOW: 0, AT_OR_ABOVE: 1}  # 40-50 straddles the cut
    assert set(table["by_cut"]) == {str(c) for c in range(101)}


def test_the_reports_band_ranges_rounded_as_every_answer_rounds_them():
    # 29.95 is reported as 29.9 (Python's round, which every answer uses); NumPy's round would make it 30.0
    assert round(29.95, 1) == 29.9 and float(np.round(29.95, 1)) == 30.0
    raw, real = np.array([29.95]), np.array([20.0])
    assert band_promise(real, raw, 0.0)["by_cut"]["30"]["needs_support"] == {BELOW: 1, AT_OR_ABOVE: 0}
    student = generate_students(1, seed=2)
    misses = policy_misses(student, real, raw, np.array([0.0]), 0.0, 30.0)
    assert misses["all"]["all_details"] == misses["all"]["scores_only"] == {"flagged": 1, "missed": 0}


def test_the_promise_is_read_from_the_loaded_models_manifest(trained):
    manifest = trained.manifest
    promise = promised(manifest, 50.0)
    assert promise["mae"] == manifest["metrics"]["test"]["mae"]
    assert promise["bias"] == manifest["metrics"]["test"]["bias"]
    assert promise["coverage"] == manifest["metrics"]["test"]["interval_coverage"]
    assert sum(sum(v.values()) for v in promise["bands"].values()) == manifest["band_outcomes"]["students"]
    assert promised(manifest, 50.5)["bands"] is None  # recorded for whole cuts only
    summary = evaluation(Tally(), manifest, 50.0)
    assert summary["students"] == 0 and summary["mae"] is None and summary["coverage_low"] is False


def test_group_tally_uses_trainings_per_group_function_and_adds_up():
    students = generate_students(240, seed=9)
    rng = np.random.default_rng(9)
    scores = students["math_score"].to_numpy(dtype=float) + rng.normal(0, 6, 240)
    real = students["math_score"].to_numpy(dtype=float)
    real[::7] = np.nan
    out = outcomes(scores, scores - 10, scores + 10, real)
    whole = group_summary(group_tally(students, out))
    halves = add_group_tallies(
        group_tally(students.iloc[:100], outcomes(scores[:100], scores[:100] - 10, scores[:100] + 10, real[:100])),
        group_tally(
            students.iloc[100:].reset_index(drop=True),
            outcomes(scores[100:], scores[100:] - 10, scores[100:] + 10, real[100:]),
        ),
    )
    labeled = ~np.isnan(real)
    direct = group_metrics(students.loc[labeled].reset_index(drop=True), real[labeled], scores[labeled], 10.0)
    for feature, rows in direct.items():
        for group, row in rows.items():
            for figures in (whole, group_summary(halves)):
                mine = figures[feature][group]
                assert mine["count"] == row["count"]
                if row["count"]:
                    assert mine["mae"] == pytest.approx(row["mae"])
                    assert mine["bias"] == pytest.approx(row["bias"])
                    assert mine["coverage"] == pytest.approx(row["coverage"])
    assert group_tally(students, outcomes(scores, scores, scores, np.full(240, np.nan))) == {}

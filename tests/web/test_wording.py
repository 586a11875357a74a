import re

import pytest

from src.web.wording import band_sentence, chance_in_ten, chance_sentence, points_change, whole_points


@pytest.mark.parametrize(
    "band, sentence",
    [
        ("needs_support", "The real math score is very likely below 50."),
        ("uncertain", "The real math score could be either side of 50."),
        ("on_track", "The real math score is very likely 50 or above."),
    ],
)
def test_each_band_is_a_grammatical_sentence(band, sentence):
    assert band_sentence(band, 50.0) == sentence


@pytest.mark.parametrize(
    "p, words",
    [
        (0.004, "under 1 in 100"),
        (0.03, "3 in 100"),
        (0.2, "2 in 10"),
        (0.66, "7 in 10"),
        (0.95, "95 in 100"),
        (0.999, "over 99 in 100"),
    ],
)
def test_the_chance_is_said_in_words_never_as_a_decimal(p, words):
    assert chance_in_ten(p) == words
    sentence = chance_sentence(p, 50.0)
    assert words in sentence.lower() and sentence.endswith("students like this one score below 50.")
    assert not re.search(r"\d\.\d", sentence)


def test_whole_points_never_cross_the_cut_and_range_ends_round_outwards():
    assert whole_points(62.4) == "62" and whole_points(0.2) == "0"
    assert whole_points(49.6, 50, "high") == "49.6"  # 50 would contradict "very likely below 50"
    assert whole_points(49.2, 50, "high") == "49.2" and whole_points(49.2, 50) == "49"
    assert whole_points(41.7, 50, "low") == "41" and whole_points(58.2, 50, "high") == "59"
    assert whole_points(50.0, 50, "low") == "50"


def test_a_change_of_less_than_half_a_point_is_never_minus_zero():
    assert points_change(-0.04) == "change it by less than half a point"
    assert points_change(-2.6) == "lower it by 3 points" and points_change(1.2) == "raise it by 1 point"

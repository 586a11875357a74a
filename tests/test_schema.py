import math

import pytest

from src import schema


def test_features_are_the_five_categories_and_two_scores_in_order():
    assert schema.FEATURE_NAMES == (
        "gender",
        "race_ethnicity",
        "parental_level_of_education",
        "lunch",
        "test_preparation_course",
        "reading_score",
        "writing_score",
    )
    assert schema.TARGET.name == "math_score"
    assert schema.FEATURES_BY_NAME["race_ethnicity"].categories == tuple(f"group {c}" for c in "ABCDE")


def test_public_download_headers_map_to_schema_names():
    assert schema.canonical_name("race/ethnicity") == "race_ethnicity"
    assert schema.canonical_name("math score") == "math_score"
    assert schema.canonical_name("gender") == "gender"
    assert set(schema.HEADER_ALIASES.values()) <= set(schema.COLUMNS)


@pytest.mark.parametrize("value", [-0.1, 100.5, math.nan, math.inf, "72", True, None])
def test_numeric_feature_refuses(value):
    assert schema.FEATURES_BY_NAME["reading_score"].check(value) == "must be a number between 0 and 100"


@pytest.mark.parametrize("value", [0, 100, 55.5])
def test_numeric_feature_accepts(value):
    assert schema.FEATURES_BY_NAME["reading_score"].check(value) is None


def test_categorical_feature_is_exact():
    lunch = schema.FEATURES_BY_NAME["lunch"]
    assert lunch.check("standard") is None
    assert lunch.check("Standard") == "must be one of: standard, free/reduced"

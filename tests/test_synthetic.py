import numpy as np
import pytest

from src import schema
from src.synthetic import generate_students
from src.validation import validate_frame


def test_same_seed_same_students_other_seed_others():
    assert generate_students(50, seed=3).equals(generate_students(50, seed=3))
    assert not generate_students(50, seed=3).equals(generate_students(50, seed=4))


def test_every_row_is_valid_by_the_schema():
    students = generate_students(2000, seed=1)
    valid, rejected = validate_frame(students.astype(str))
    assert len(rejected) == 0 and len(valid) == 2000
    assert list(students.columns) == list(schema.COLUMNS)


def test_math_depends_on_reading_writing_and_gender_as_in_the_real_data():
    s = generate_students(5000, seed=2)
    assert np.corrcoef(s.math_score, s.reading_score)[0, 1] > 0.75
    assert np.corrcoef(s.reading_score, s.writing_score)[0, 1] > 0.9
    boys, girls = s[s.gender == "male"], s[s.gender == "female"]
    assert boys.math_score.mean() - boys.reading_score.mean() > girls.math_score.mean() - girls.reading_score.mean() + 5
    assert s.groupby("lunch").math_score.mean()["standard"] > s.groupby("lunch").math_score.mean()["free/reduced"]
    assert s.math_score.mean() == pytest.approx(66, abs=4)


def test_refuses_an_empty_cohort():
    with pytest.raises(ValueError, match="positive"):
        generate_students(0)

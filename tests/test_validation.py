import json

import numpy as np
import pandas as pd
import pytest

from src.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES, SchemaError
from src.validation import (
    StudentColumns,
    ValidationFailed,
    check_instances,
    check_students_frame,
    check_text_columns,
    check_text_table,
    validate_frame,
    validate_student,
    validate_students,
)


def test_valid_student_passes_unchanged(student):
    record, errors = validate_student(student)
    assert errors == [] and record == student


def test_public_download_keys_are_accepted(student):
    raw = dict(student)
    raw["race/ethnicity"] = raw.pop("race_ethnicity")
    raw["reading score"] = raw.pop("reading_score")
    record, errors = validate_student(raw)
    assert errors == [] and record["race_ethnicity"] == "group B" and record["reading_score"] == 72


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"reading_score": 101}, "reading_score", "must be a number between 0 and 100"),
        ({"reading_score": "72"}, "reading_score", "must be a number between 0 and 100"),
        ({"writing_score": None}, "writing_score", "is required"),
        ({"gender": "other"}, "gender", "must be one of: female, male"),
        ({"lunch": 1}, "lunch", "must be one of: standard, free/reduced"),
        ({"shoe_size": 42}, "shoe_size", "is not an accepted field"),
    ],
)
def test_each_bad_field_is_named_with_its_rule(student, change, field, message):
    _, errors = validate_student({**student, **change})
    assert [(e.field, e.message) for e in errors] == [(field, message)]


def test_missing_field_is_named(student):
    del student["test_preparation_course"]
    _, errors = validate_student(student)
    assert [(e.field, e.message) for e in errors] == [("test_preparation_course", "is required")]


def test_same_field_in_both_header_styles_is_refused(student):
    _, errors = validate_student({**student, "reading score": 50})
    assert errors[0].field == "reading score" and "twice" in errors[0].message


def test_form_values_are_parsed_as_numbers(student):
    form = {k: str(v) for k, v in student.items()}
    record, errors = validate_student(form, from_form=True)
    assert errors == [] and record["reading_score"] == 72.0
    _, errors = validate_student({**form, "writing_score": "seventy"}, from_form=True)
    assert [(e.field, e.message) for e in errors] == [("writing_score", "must be a number between 0 and 100")]


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("7,5", "must be written with a point, not a comma: 7.5"),
        (" 70,5 ", "must be written with a point, not a comma: 70.5"),
        (",5", "must be written with a point, not a comma: .5"),
        ("7,", "must be a number between 0 and 100"),
        ("1,5,0", "must be a number between 0 and 100"),
        ("7_5", "must be a number between 0 and 100"),  # float() would read 75
        ("\uff17\uff12", "must be a number between 0 and 100"),  # full-width 72: float() would read it
        ("nan", "must be a number between 0 and 100"),
    ],
)
def test_form_decimal_comma_is_refused_not_read(student, typed, message):
    form = {k: str(v) for k, v in student.items()}
    _, errors = validate_student({**form, "reading_score": typed}, from_form=True)
    assert [(e.field, e.message) for e in errors] == [("reading_score", message)]


@pytest.mark.parametrize(
    ("typed", "read"), [("72", 72.0), (" 72.5 ", 72.5), (".5", 0.5), ("7.", 7.0), ("1e1", 10.0), ("+3", 3.0)]
)
def test_plain_numbers_are_read_exactly(student, typed, read):
    form = {k: str(v) for k, v in student.items()}
    record, errors = validate_student({**form, "reading_score": typed}, from_form=True)
    assert not errors and record["reading_score"] == read


def test_batch_errors_carry_the_index(student):
    with pytest.raises(ValidationFailed) as failed:
        validate_students([student, {**student, "gender": "x"}])
    assert [e.as_dict() for e in failed.value.errors] == [
        {"index": 1, "field": "gender", "message": "must be one of: female, male"}
    ]


def test_frame_rejects_rows_with_every_reason():
    frame = pd.DataFrame(
        {
            "gender": ["female", "robot", "male"],
            "race/ethnicity": ["group A", "group B", "group Z"],
            "parental level of education": ["high school"] * 3,
            "lunch": ["standard"] * 3,
            "test preparation course": ["none"] * 3,
            "math score": ["50", "60", "abc"],
            "reading score": ["55", "150", "60"],
            "writing score": ["52", "61", ""],
        }
    )
    valid, rejected = validate_frame(frame)
    assert len(valid) == 1 and valid.loc[0, "math_score"] == 50.0
    assert rejected["line"].tolist() == [3, 4]  # the header is line 1 of the file
    assert rejected.loc[0, "reason"] == (
        "gender: must be one of: female, male; reading_score: must be a number between 0 and 100"
    )
    assert "race_ethnicity: must be one of" in rejected.loc[1, "reason"]
    assert "writing_score: is required" in rejected.loc[1, "reason"]
    assert "math_score: must be a number between 0 and 100" in rejected.loc[1, "reason"]


def test_frame_without_a_column_is_refused_naming_it():
    with pytest.raises(SchemaError, match="missing required column.*writing_score"):
        validate_frame(
            pd.DataFrame({"gender": ["female"]}).assign(
                race_ethnicity="group A",
                parental_level_of_education="high school",
                lunch="standard",
                test_preparation_course="none",
                math_score="1",
                reading_score="1",
            )
        )


def test_the_batch_reads_score_text_as_the_form_does(student):
    import pandas as pd

    from src.validation import check_students_frame

    cells = ["7,5", "72\u00a0", "7_5", "", " 70,5", "\uff17\uff12", "1e1"]
    frame = pd.DataFrame([{**{k: str(v) for k, v in student.items()}, "reading_score": c} for c in cells])
    ok, students, errors = check_students_frame(frame)
    for position, cell in enumerate(cells):  # the same verdict and message as the form's
        record, form_errors = validate_student(
            {**{k: str(v) for k, v in student.items()}, "reading_score": cell}, from_form=True
        )
        batch = errors.loc[errors["position"] == position, "reason"].tolist()
        assert batch == [e.message for e in form_errors], cell
        assert bool(ok.iloc[position]) == (not form_errors)
    assert students["reading_score"].tolist() == [72.0, 10.0]


def test_student_columns_read_as_records_in_order_and_fast():
    import time

    from src.answers.fast_path import random_students
    from src.validation import StudentColumns

    records = random_students(20_000, seed=5).to_dict("records")
    columns = StudentColumns.from_records(records)
    started = time.perf_counter()
    assert list(columns) == records  # iterated whole, not one column lookup per record
    assert time.perf_counter() - started < 2.0
    assert columns[3] == records[3] and columns[-1] == records[-1] and columns[5:8] == records[5:8]
    assert len(columns) == 20_000


@pytest.mark.parametrize(
    "text",
    [
        b'{"a": 1, "b": [1, 2.5, "x"], "c": {"d": null}}',
        '{"a": "caf\u00e9 \u2028"}'.encode("utf-8"),
        '{"a": "caf\u00e9"}'.encode("utf-16"),  # a byte-order mark tells the encoding, as json.loads reads it
        '{"a": "caf\u00e9"}'.encode("utf-32-le"),
        '[1, {"x": true}]',
    ],
)
def test_parse_json_reads_what_json_loads_reads(text):
    from src.validation import parse_json

    assert parse_json(text) == json.loads(text)


@pytest.mark.parametrize("text", ['\ufeff{"a": 1}', b'{"a": ', b"\xff\xfe\x00", "NaN-ish", b""])
def test_parse_json_refuses_what_json_loads_refuses_with_a_value_error(text):
    from src.validation import parse_json

    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        parse_json(text)


def test_parse_json_keeps_the_keys_given_twice_at_every_depth():
    from src.validation import duplicated_keys, parse_json

    parsed = parse_json(b'{"gender": "female", "inner": {"x": 1, "x": 2}, "gender": "male"}')
    assert duplicated_keys(parsed) == ("gender",) and duplicated_keys(parsed["inner"]) == ("x",)
    assert duplicated_keys(parse_json('{"a": 1}')) == ()


@pytest.mark.parametrize(
    "text",
    [
        b'{"instances": [{"gender": "female", "x": 1}, {"gender": "male", "x": 2, "gender": "female"}]}',
        b'{"instances": [{"gender": "female"}], "instances": [{"gender": "male"}]}',
        b'{"gender": "female", "inner": {"x": 1, "x": 2}}',
        b'{"gender" : "female", "gender": "male"}',
        b'{"gender": "female", "race_ethnicity": "x:y", "gender": "male"}',  # a colon in a string and a key twice
        b'{"gender": "fe\\"male", "gender": "male"}',
    ],
)
def test_a_key_given_twice_is_kept_whichever_parser_reads_the_body(text):
    from src.validation import duplicated_keys, parse_json

    parsed = parse_json(text)
    assert parsed == json.loads(text)
    found = set(duplicated_keys(parsed)) | set(duplicated_keys(parsed.get("inner", {})))
    found |= {key for student in parsed.get("instances", []) for key in duplicated_keys(student)}
    assert found, text


def test_students_as_clients_send_them_are_read_by_orjson_with_the_same_values():
    from src.validation import JsonObject, _read_plainly, parse_json

    student = {"gender": "female", "race_ethnicity": "group C", "reading_score": 72, "writing_score": 70.5}
    for body in (student, {"instances": [student, {**student, "gender": "café ∞"}] * 50}, {"instances": []}):
        raw = json.dumps(body, ensure_ascii=False).encode()
        assert _read_plainly(raw) == body and parse_json(raw) == json.loads(raw) == body
        assert not isinstance(parse_json(raw), JsonObject)  # the plain way was taken
    # what orjson would read otherwise than json.loads, or cannot tell apart, goes the standard way
    for raw in (
        b'{"reading_score": 1234567890123456789012}',  # orjson: a float; json: an int
        b'{"reading_score": NaN}',
        b'{"reading_score": 1e400}',
        b'{"gender": "fe\\u006dale"}',
        b'\xef\xbb\xbf{"gender": "female"}',
        b'[{"gender": "female"}]',
        b'{"student_id": "10:30", "gender": "female"}',
        b'{"instances": [1, 2]}',
    ):
        assert _read_plainly(raw) is None, raw
        assert parse_json(raw) == json.loads(raw)


def _text_frame(rows: int, seed: int) -> pd.DataFrame:
    """Cells as a CSV reader gives them: mostly plain, some written oddly, blank, missing or out of range."""
    rng = np.random.default_rng(seed)
    odd = np.array(
        [
            "",
            " 72",
            "72 ",
            "+5",
            ".5",
            "5.",
            "1e1",
            "1E+1",
            "-0",
            "-0.0",
            "nan",
            "NaN",
            "inf",
            "-inf",
            "abc",
            "7 2",
            "101",
            "100",
            "0",
            "100.0",
            "1e400",
            "0x10",
            "1_0",
            "٧٢",
            "72,5",
            None,
        ],
        dtype=object,
    )
    frame = {}
    for feature in CATEGORICAL_FEATURES:
        cells = np.array(feature.categories, dtype=object)[rng.integers(0, len(feature.categories), rows)]
        swap = rng.random(rows) < 0.05
        cells[swap] = np.array(["", "Female", "other", None], dtype=object)[rng.integers(0, 4, swap.sum())]
        frame[feature.name] = cells
    for feature in NUMERIC_FEATURES:
        cells = rng.integers(0, 101, rows).astype(str).astype(object)
        swap = rng.random(rows) < 0.2
        cells[swap] = odd[rng.integers(0, len(odd), swap.sum())]
        frame[feature.name] = cells
    return pd.DataFrame(frame).astype("string")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_column_check_of_text_cells_agrees_with_the_row_check(seed):
    frame = _text_frame(3000, seed)
    ok, students, errors = check_text_table(frame)
    ok_rows, typed, row_errors = check_students_frame(frame)
    assert ok.tolist() == ok_rows.tolist() and 0 < ok.sum() < len(frame)
    expected = StudentColumns.from_frame(typed)
    assert students.size == expected.size
    for name in expected.codes:
        assert students.codes[name].tolist() == expected.codes[name].tolist(), name
    for name in expected.numbers:  # the very bits: -0.0 stays -0.0
        assert students.numbers[name].tobytes() == expected.numbers[name].tobytes(), name
    ours = errors.sort_values(["position", "field"], kind="stable").reset_index(drop=True)
    theirs = row_errors.sort_values(["position", "field"], kind="stable").reset_index(drop=True)
    assert ours[["position", "field", "reason"]].astype(str).equals(theirs[["position", "field", "reason"]].astype(str))


def test_the_column_check_takes_a_table_of_plain_cells_whole():
    frame = _text_frame(500, 3)
    for feature in NUMERIC_FEATURES:
        frame[feature.name] = pd.array([str(i % 101) for i in range(500)], dtype="string")
    for feature in CATEGORICAL_FEATURES:
        frame[feature.name] = pd.array([feature.categories[i % len(feature.categories)] for i in range(500)], dtype="string")
    ok, students, errors = check_text_table(frame)
    assert ok.all() and errors.empty and students.size == 500
    assert students.numbers["reading_score"].tolist() == [float(i % 101) for i in range(500)]


def test_a_class_lists_columns_are_checked_as_the_form_checks_each_student():
    rng = np.random.default_rng(7)
    size = 2000
    cells = {}
    for feature in CATEGORICAL_FEATURES:
        pool = [
            *feature.categories,
            *(c.upper() for c in feature.categories),
            *(f" {c} " for c in feature.categories),
            "",
            "x",
            "group  a",
        ]
        cells[feature.name] = [pool[i] for i in rng.integers(0, len(pool), size)]
    for feature in NUMERIC_FEATURES:
        pool = [
            *(str(i) for i in range(101)),
            "72.5",
            " 72",
            "+5",
            ".5",
            "5.",
            "1e1",
            "-0",
            "nan",
            "inf",
            "abc",
            "101",
            "1e400",
            "1_0",
            "72,5",
            "\u00a072",
            "",
            "00072",
            "-1",
            "-0.5",
            "100.5",
        ]
        cells[feature.name] = [pool[i] for i in rng.integers(0, len(pool), size)]
    ok, students = check_text_columns(cells, size)
    records = []
    for row in range(size):
        record, errors = validate_student({name: cells[name][row] for name in cells}, from_form=True)
        assert ok[row] == (not errors), (row, errors)
        if record is not None and not errors:
            records.append(record)
    assert 0 < len(records) == students.size < size
    assert list(students) == records  # the same categories (canonical spelling) and numbers


def test_the_column_check_reads_columns_of_several_arrow_blocks():
    import pyarrow as pa

    frame = _text_frame(900, 4)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    blocks = pa.Table.from_batches(table.to_batches(max_chunksize=250)).to_pandas()  # as a read across blocks
    assert isinstance(pa.array(blocks["reading_score"], type=pa.string()), pa.ChunkedArray)
    ok, students, errors = check_text_table(blocks)
    ok_whole, whole, whole_errors = check_text_table(frame)
    assert ok.tolist() == ok_whole.tolist() and list(students) == list(whole) and errors.equals(whole_errors)


def test_no_instances_are_no_students_column_by_column():
    empty = check_instances([])
    assert empty is not None and empty.size == 0
    assert empty.code_matrix.shape == (5, 0) and empty.number_matrix.shape == (2, 0)

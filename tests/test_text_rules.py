"""The text rules of src/schema.py give one verdict in every channel that carries text.

"Female", " group b " and a ``Reading Score`` header are accepted, in the schema's spelling, by the teachers'
form, a class list, the batch command and training; text that names no category ("Femal") is refused by each.
The batch command on Spark is checked in tests/batch/test_spark.py with the same file. The JSON API is typed
and takes the schema's spelling only.
"""

from __future__ import annotations

import io
import re
import urllib.parse
from pathlib import Path

import pandas as pd
import pytest

from src.batch.core import BatchConfig
from src.pipeline.batch_predict import run
from src.schema import (
    COLUMNS,
    FEATURE_NAMES,
    FEATURES,
    NumericFeature,
    canonical_category,
    canonical_name,
    text_pattern,
)
from src.validation import parse_form_number, validate_frame, validate_student

LOOSE = {"gender": "Female", "race_ethnicity": " group b "}
SPELLED = {"gender": "female", "race_ethnicity": "group B"}
HEADERS = {"reading_score": "Reading Score"}
BASE = {
    "gender": "female",
    "race_ethnicity": "group B",
    "parental_level_of_education": "bachelor's degree",
    "lunch": "standard",
    "test_preparation_course": "none",
    "reading_score": "72",
    "writing_score": "74",
}


def text_file(changes: dict[str, str], *, math_score: str | None = None) -> str:
    """A file of one student with ``changes``, the reading score under the ``Reading Score`` header."""
    row = {**BASE, **changes}
    names = [HEADERS.get(n, n) for n in FEATURE_NAMES]
    values = [row[n] for n in FEATURE_NAMES]
    if math_score is not None:
        names, values = [*names, "Math Score"], [*values, math_score]
    return ",".join(names) + "\n" + ",".join(f'"{v}"' for v in values) + "\n"


def test_the_schema_matches_headers_and_categories_ignoring_case_and_surrounding_spaces():
    assert canonical_name(" Reading Score ") == "reading_score"
    assert canonical_name("RACE/ETHNICITY") == "race_ethnicity"
    assert canonical_name("Notes") == "Notes"  # names no column: unchanged, refused where columns are checked
    assert canonical_category("gender", "Female") == "female"
    assert canonical_category("race_ethnicity", " group b ") == "group B"
    assert canonical_category("gender", "Femal") == "Femal"
    long_s = "ma\u017fter's degree"  # Unicode's case folding reads the long s as an s: ASCII letters only here
    assert canonical_category("parental_level_of_education", long_s) == long_s


def test_the_form_accepts_them_in_the_schemas_spelling(client):
    fields = {HEADERS.get(k, k): v for k, v in {**BASE, **LOOSE}.items()}
    answer = client.post("/predictdata", data=fields)
    assert answer.status_code == 303, answer.get_data(as_text=True)[:500]
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(answer.headers["Location"]).query))
    assert {k: query[k] for k in SPELLED} == SPELLED
    refused = client.post("/predictdata", data={**BASE, "gender": "Femal"})
    assert refused.status_code == 422


def test_a_class_list_accepts_them_in_the_schemas_spelling(client):
    answer = client.post("/predictdata", data=text_file(LOOSE).encode(), content_type="text/csv")
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    assert len(answer.get_json()["predictions"]) == 1 and "math_score" in answer.get_json()["predictions"][0]
    refused = client.post("/predictdata", data=text_file({"gender": "Femal"}).encode(), content_type="text/csv")
    assert "must be one of: female, male" in refused.get_data(as_text=True)


def run_batch(store: Path, folder: Path, text: str, engine: str = "local") -> tuple[object, pd.DataFrame]:
    """The batch command on a one-student file: its result and its rejects."""
    source = folder / "in"
    source.mkdir()
    (source / "students.csv").write_text(text)
    out = folder / "out"
    result = run(BatchConfig(input=str(source), output=str(out), store=store, engine=engine, master="local[2]"))
    rejects = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in (out / "rejects").glob("*.csv")])
    return result, rejects


@pytest.mark.parametrize(("changes", "accepted"), [(LOOSE, True), ({"gender": "Femal"}, False)])
def test_the_batch_command_gives_the_same_verdict(trained, tmp_path, changes, accepted):
    result, rejects = run_batch(trained.store, tmp_path, text_file(changes))
    assert (result.predictions, result.rejected_rows) == ((1, 0) if accepted else (0, 1))
    if not accepted:
        assert rejects["reason"].tolist() == ["must be one of: female, male"]


def test_training_accepts_them_in_the_schemas_spelling():
    refused_row = text_file({"gender": "Femal"}, math_score="70").split("\n", 1)[1]
    text = text_file(LOOSE, math_score="70") + refused_row
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    valid, rejected = validate_frame(frame)
    assert list(valid.columns) == list(COLUMNS)
    assert valid.loc[0, ["gender", "race_ethnicity"]].to_dict() == SPELLED
    assert len(valid) == 1 and rejected["reason"].tolist() == ["gender: must be one of: female, male"]


def test_the_json_api_takes_the_schemas_spelling_only():
    record, errors = validate_student({**BASE, **LOOSE, "reading_score": 72, "writing_score": 74})
    assert record is None
    assert [e.field for e in errors] == ["gender", "race_ethnicity"]
    typed, none = validate_student({**BASE, **SPELLED, "reading_score": 72, "writing_score": 74})
    assert typed is not None and not none


@pytest.mark.parametrize("feature", FEATURES, ids=lambda f: f.name)
def test_the_documents_text_pattern_accepts_exactly_what_the_rules_accept(feature):
    """The form's pattern in /openapi.json is derived from the rules: what it matches, the rules read."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    pattern = re.compile(text_pattern(feature))

    def accepted(text: str) -> bool:
        if isinstance(feature, NumericFeature):
            return parse_form_number(text) is not None
        return canonical_category(feature.name, text) in feature.categories

    @settings(max_examples=150, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.from_regex(pattern), st.text(max_size=12)))
    def agree(text):
        assert bool(pattern.search(text)) == accepted(text), text

    agree()
    if isinstance(feature, NumericFeature):
        for text in ("72", "+72", ".5", "7.2e1", " 72 ", "72."):
            assert pattern.search(text) and accepted(text), text
        for text in ("7,5", "7_5", "0x10", "\u0667\u0662", "", "1e"):
            assert not pattern.search(text) and not accepted(text), text

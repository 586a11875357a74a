"""The columnar answers equal, field for field, the answers made one student at a time.

The reference here is written in this file, one student at a time with Python numbers: the additive model's own
terms added in order (scikit-learn's prediction for other scorers), the residuals searched with ``bisect``, the
band rule on Python's ``round``, ``describe_factor``. Every channel (the JSON API, the CSV class list as JSON and
as CSV, the batch command's files) must give each fixed student exactly what that reference gives.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import io
import json

import numpy as np
import pandas as pd
import pytest

from src.answers.bands import NEEDS_SUPPORT, ON_TRACK, UNCERTAIN, Bands
from src.answers.columns import (
    BASELINE,
    FACTOR_COLUMNS,
    HIGH,
    LEVEL,
    LOW,
    MATH_SCORE,
    MODEL_VERSION,
    TOP_FACTOR,
    answers_frame,
)
from src.answers.factors import NoFactors, describe_factor
from src.answers.fast_path import AdditiveScorer, VectorScorer, random_students, read_layout
from src.answers.model import PredictPipeline
from src.config import AppConfig
from src.schema import BACKGROUND_FEATURES, EVIDENCE_FEATURES, FEATURE_NAMES, TARGET
from src.web.answers import single_answer

CUT = 60.0


@pytest.fixture(scope="module")
def pipeline(trained) -> PredictPipeline:
    return PredictPipeline.from_artifacts(trained.manifest_path.parent)


@pytest.fixture(scope="module")
def fixed_students() -> list[dict]:
    """Fixed students: random valid ones (whole, half and fractional scores), the range's ends, integers."""
    rows = random_students(1500, seed=21).to_dict("records")
    edges = random_students(8, seed=3).to_dict("records")
    for row, (reading, writing) in zip(
        edges, [(0, 0), (100, 100), (0, 100), (100, 0), (0.5, 99.5), (50, 50), (1e-9, 99.999999), (33.3, 66.7)], strict=True
    ):
        row.update(reading_score=reading, writing_score=writing)
    return rows + edges


def _clip(value: float) -> float:
    return min(max(value, TARGET.minimum), TARGET.maximum)


def raw_score(pipeline: PredictPipeline, record: dict) -> float:
    """The unclipped score of one student: the additive terms added in order, else scikit-learn's prediction."""
    scorer = pipeline.scorer
    if isinstance(scorer, AdditiveScorer):
        total = scorer.intercept
        for name, table in scorer.contributions.items():
            total += table[record[name]]
        for name, slope in scorer.slopes.items():
            total += slope * record[name]
        return total
    return float(pipeline.reference.score_frame(pd.DataFrame([record]))[0])


def contributions_of(pipeline: PredictPipeline, record: dict) -> dict[str, float]:
    return {
        name: (table[record[name]] if table is not None else slope * record[name]) - centre
        for name, table, slope, centre in pipeline.factors.terms
    }


def chance_below(pipeline: PredictPipeline, raw: float, cut: float) -> float:
    residuals = pipeline.below_cut.residuals.tolist()
    below, at_most = bisect.bisect_left(residuals, cut - raw), bisect.bisect_right(residuals, cut - raw)
    return (below + 0.5 * (at_most - below + 1)) / (len(residuals) + 1)


def band_name(bands: Bands, low: float, high: float) -> str:
    """The band rule as the teachers' guide states it, for one reported range."""
    return NEEDS_SUPPORT if high < bands.cut else ON_TRACK if low >= bands.cut else UNCERTAIN


def band_without_background(bands: Bands, raw: float, background: float, half: float) -> str:
    centred = raw - background
    return band_name(bands, round(_clip(centred - half), 1), round(_clip(centred + half), 1))


def one_by_one(pipeline: PredictPipeline, record: dict, bands: Bands) -> dict:
    """Every field of one student's answer, made for that student alone with Python numbers."""
    raw = raw_score(pipeline, record)
    score, low, high = _clip(raw), _clip(raw - pipeline.half_width), _clip(raw + pipeline.half_width)
    out = {
        MATH_SCORE: score,
        LOW: low,
        HIGH: high,
        LEVEL: pipeline.level,
        MODEL_VERSION: pipeline.model_version,
        "band": band_name(bands, round(low, 1), round(high, 1)),
        "raw": raw,
        "below_cut_probability": chance_below(pipeline, raw, bands.cut),
        "band_without_background": "",
    }
    if pipeline.factors.available:
        points = contributions_of(pipeline, record)
        background = sum(points[name] for name in BACKGROUND_FEATURES)
        out["band_without_background"] = band_without_background(bands, raw, background, pipeline.half_width)
        top = EVIDENCE_FEATURES[0]
        for name in EVIDENCE_FEATURES[1:]:
            if abs(points[name]) > abs(points[top]):  # the first of equals, as argmax
                top = name
        out.update(
            {
                BASELINE: pipeline.factors.baseline,
                TOP_FACTOR: describe_factor(top, record[top], points[top], pipeline.factors.averages[top]),
                **{f"factor_{name}": points[name] for name in FEATURE_NAMES},
            }
        )
    else:
        out.update({BASELINE: np.nan, TOP_FACTOR: "", **dict.fromkeys(FACTOR_COLUMNS, np.nan)})
    return out


def assert_frame_is_row_by_row(frame: pd.DataFrame, pipeline: PredictPipeline, records: list[dict], exact: bool) -> None:
    expected = [one_by_one(pipeline, r, Bands(CUT)) for r in records]
    assert len(frame) == len(records)
    for column in (MATH_SCORE, LOW, HIGH, LEVEL, "below_cut_probability", BASELINE, *FACTOR_COLUMNS):
        got = frame[column].to_numpy(dtype=float)
        want = np.array([e[column] for e in expected], dtype=float)
        if exact:
            np.testing.assert_array_equal(got, want, err_msg=column)
        else:
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-9, err_msg=column)
    for column in (MODEL_VERSION, "band", "band_without_background", TOP_FACTOR):
        assert frame[column].tolist() == [e[column] for e in expected], column


def test_answer_columns_of_the_additive_model_are_the_row_by_row_answers_exactly(pipeline, fixed_students):
    frame = answers_frame(pipeline, fixed_students, support_cut=CUT)
    assert_frame_is_row_by_row(frame, pipeline, fixed_students, exact=True)
    # baseline plus the factors is the unclipped score
    total = frame[BASELINE].to_numpy() + frame[list(FACTOR_COLUMNS)].to_numpy().sum(axis=1)
    raw = np.array([raw_score(pipeline, r) for r in fixed_students])
    assert np.abs(total - raw).max() <= 1e-9


@pytest.mark.parametrize("kind", ["vector", "pipeline"])
def test_answer_columns_of_other_scorers_are_the_row_by_row_answers(pipeline, fixed_students, kind):
    scorer = (
        VectorScorer(read_layout(pipeline.reference.preprocessor), pipeline.reference.model)
        if kind == "vector"
        else pipeline.reference
    )
    other = dataclasses.replace(pipeline, scorer=scorer, factors=NoFactors("not additive"))
    frame = answers_frame(other, fixed_students[:300], support_cut=CUT)
    assert_frame_is_row_by_row(frame, other, fixed_students[:300], exact=False)


def test_answers_from_a_frame_of_text_equal_those_from_records(pipeline, fixed_students):
    as_text = pd.DataFrame(fixed_students)[list(FEATURE_NAMES)].astype(str)
    typed = pd.DataFrame(fixed_students)[list(FEATURE_NAMES)]
    by_records = answers_frame(pipeline, fixed_students, support_cut=CUT)
    by_frame = answers_frame(pipeline, typed, support_cut=CUT)
    pd.testing.assert_frame_equal(by_frame, by_records)
    assert len(as_text) == len(by_frame)


@pytest.fixture()
def served(store_dir, tmp_path):
    from app import create_app

    return create_app(AppConfig(artifacts_dir=store_dir, drift_dir=tmp_path / "drift", support_cut=CUT)).test_client()


def test_json_batch_gives_each_student_its_single_answer(served, pipeline, fixed_students):
    body = served.post("/predictdata", json={"instances": fixed_students}).get_json()
    assert body["model_version"] == pipeline.model_version and "factors_reason" not in body
    bands = Bands(CUT)
    expected = [
        {k: v for k, v in single_answer(pipeline, r, bands)[0].items() if k != "model_version"} for r in fixed_students
    ]
    assert body["predictions"] == expected


def test_csv_class_list_gives_each_row_its_single_answer_and_top_factor(served, pipeline, fixed_students):
    rows = fixed_students[:600]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["student_id", *FEATURE_NAMES])
    ids = [f"7B-{i:03d}" for i in range(len(rows))]
    for sid, row in zip(ids, rows, strict=True):
        writer.writerow([sid, *(row[n] for n in FEATURE_NAMES)])
    writer.writerow(["bad", "female", "group Z", *(rows[0][n] for n in FEATURE_NAMES[2:5]), "7,5", "101"])
    body = out.getvalue().encode()
    records = [
        {**r, "reading_score": float(repr(r["reading_score"])), "writing_score": float(repr(r["writing_score"]))}
        for r in rows
    ]
    bands = Bands(CUT)
    singles = [single_answer(pipeline, r, bands)[0] for r in records]

    as_json = served.post("/predictdata", data=body, headers={"Content-Type": "text/csv"}).get_json()
    items = as_json["predictions"]
    assert items[:-1] == [
        {"student_id": sid, **{k: v for k, v in s.items() if k != "model_version"}}
        for sid, s in zip(ids, singles, strict=True)
    ]
    assert items[-1]["row"] == len(rows) + 2 and items[-1]["student_id"] == "bad"  # the spreadsheet's row
    assert [d["field"] for d in items[-1]["details"]] == ["race_ethnicity", "reading_score", "writing_score"]

    as_csv = served.post("/predictdata", data=body, headers={"Content-Type": "text/csv", "Accept": "text/csv"})
    table = list(csv.DictReader(io.StringIO(as_csv.get_data(as_text=True))))
    assert len(table) == len(rows) + 1
    for line, record, single in zip(table, records, singles, strict=False):
        reference = one_by_one(pipeline, record, bands)
        assert (line["predicted_math_score"], line["interval_low"], line["interval_high"]) == (
            f"{single['math_score']:.1f}",
            f"{single['interval']['low']:.1f}",
            f"{single['interval']['high']:.1f}",
        )
        assert (line["band"], line["top_factor"], line["error"]) == (single["band"]["name"], reference[TOP_FACTOR], "")
        assert float(line["below_cut_probability"]) == single["below_cut_probability"]
        assert line["band_without_background"] == single["band_without_background"]
    assert table[-1]["predicted_math_score"] == "" and table[-1]["error"].startswith(
        f"row {len(rows) + 2} (student bad): Race/ethnicity group:"
    )


def test_batch_command_writes_each_student_its_row_by_row_answer(trained, pipeline, fixed_students, tmp_path):
    from src.batch.core import BatchConfig
    from src.pipeline.batch_predict import run

    frame = pd.DataFrame(fixed_students)[list(FEATURE_NAMES)]
    frame.insert(0, "student_id", [f"S{i:05d}" for i in range(len(frame))])
    (tmp_path / "in").mkdir()
    frame.iloc[:700].to_csv(tmp_path / "in" / "a.csv", index=False)
    frame.iloc[700:].to_csv(tmp_path / "in" / "b.csv", index=False)
    # what the file says is what is scored: the numbers as the CSV writes them, read back
    records = pd.read_csv(tmp_path / "in" / "a.csv")[list(FEATURE_NAMES)].to_dict("records") + pd.read_csv(
        tmp_path / "in" / "b.csv"
    )[list(FEATURE_NAMES)].to_dict("records")
    for fmt in ("parquet", "csv"):
        out = tmp_path / f"out-{fmt}"
        run(
            BatchConfig(
                input=str(tmp_path / "in"), output=str(out), store=trained.store, format=fmt, support_cut=CUT, chunk_rows=400
            )
        )
        parts = sorted((out / "predictions").glob(f"part-*.{fmt}"))
        got = pd.concat(
            [
                pd.read_parquet(p) if fmt == "parquet" else pd.read_csv(p, dtype={"student_id": str}, keep_default_na=False)
                for p in parts
            ],
            ignore_index=True,
        )
        assert got["student_id"].tolist() == frame["student_id"].tolist()
        assert got["row"].tolist() == list(range(1, 701)) + list(range(1, len(frame) - 700 + 1))
        assert_frame_is_row_by_row(got, pipeline, records, exact=True)


@pytest.mark.parametrize("value", [[None, None], ["none"], {"a": 1}, 1, None, True, "None"])
def test_a_json_batch_with_a_category_of_another_type_is_refused_naming_the_field(served, student, value):
    answer = served.post("/predictdata", json={"instances": [student, {**student, "test_preparation_course": value}]})
    assert answer.status_code == 422
    message = "is required" if value is None else "must be one of: none, completed"
    assert answer.get_json()["details"] == [{"index": 1, "field": "test_preparation_course", "message": message}]


@pytest.mark.parametrize("value", [[1], "72", True, None, float("inf"), 10**400, -0.5])
def test_a_json_batch_with_a_score_of_another_type_is_refused_naming_the_field(served, student, value):
    broken = json.dumps({**student, "reading_score": "X"}).replace(
        '"X"', str(value) if type(value) is int else json.dumps(value)
    )
    body = f'{{"instances": [{json.dumps(student)}, {broken}]}}'
    answer = served.post("/predictdata", data=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    assert [(d["index"], d["field"]) for d in answer.get_json()["details"]] == [(1, "reading_score")]

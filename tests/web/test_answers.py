import json

import numpy as np

from src.answers.bands import Bands
from src.answers.columns import ANSWER_FIELDS, FACTOR_COLUMNS, compute_answers
from src.answers.fast_path import random_students
from src.answers.model import PredictPipeline
from src.schema import FEATURE_NAMES
from src.web.answers import batch_answer, json_items, single_answer


def test_one_student_is_a_batch_of_one(trained):
    pipeline = PredictPipeline.from_artifacts(trained.manifest_path.parent)
    students = random_students(300, seed=4).to_dict("records")
    for policy in ("all_details", "scores_only"):
        bands = Bands(50.0, policy)
        items = batch_answer(pipeline, students, bands).items
        for record, item in zip(students, items, strict=True):
            single, _ = single_answer(pipeline, record, bands)
            assert item == {k: v for k, v in single.items() if k != "model_version"}
            assert single["model_version"] == pipeline.model_version


def test_json_numbers_are_the_answer_columns_rounded_as_python_rounds_them(trained):
    pipeline = PredictPipeline.from_artifacts(trained.manifest_path.parent)
    students = random_students(500, seed=9).to_dict("records")
    bands = Bands(62.5)
    answers = compute_answers(pipeline, students, bands)
    items = json_items(answers, bands)
    out = answers.predictions
    for i, item in enumerate(items):
        assert item["math_score"] == round(float(out.scores[i]), 1)
        assert item["interval"] == {"low": round(float(out.low[i]), 1), "high": round(float(out.high[i]), 1), "level": 0.9}
        assert item["band"] == bands.payload(answers.bands[i])
        assert item["below_cut_probability"] == round(float(answers.below_cut[i]), 3)
        assert item["factors"]["unclipped_score"] == round(float(out.raw[i]), 8)
        assert list(item["factors"]["contributions"]) == list(FEATURE_NAMES)
        assert list(item["factors"]["contributions"].values()) == [round(float(v), 8) for v in answers.contributions[i]]


def test_the_json_answer_holds_every_field_the_table_places_in_json(trained, student):
    pipeline = PredictPipeline.from_artifacts(trained.manifest_path.parent)
    item, _ = single_answer(pipeline, student, Bands(50.0))
    for field in ANSWER_FIELDS:
        if field.json is None:
            continue
        node = item
        for key in field.json:
            node = node[key]
        assert node is not None, field.name
    assert {f.name for f in ANSWER_FIELDS if f.json is None} == {"top_factor"}
    assert [f.name for f in ANSWER_FIELDS if f.name.startswith("factor_")] == list(FACTOR_COLUMNS)


def test_the_view_sends_the_answer_as_compact_json_the_same_values(client, student, trained):
    answer = client.post("/predictdata", json=student)
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    pipeline = PredictPipeline.from_artifacts(trained.manifest_path.parent)
    expected, _ = single_answer(pipeline, student, Bands(50.0))
    assert json.loads(answer.get_data()) == expected
    assert b", " not in answer.get_data()  # orjson: no spaces to send
    assert np.isfinite(expected["math_score"])

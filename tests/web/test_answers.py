import json

from src.answers.bands import Bands
from src.answers.fast_path import random_students
from src.answers.model import PredictPipeline
from src.web.answers import single_answer, single_answer_json


def test_the_fast_single_answer_text_is_exactly_json_dumps_of_the_answer(trained, student):
    pipeline = PredictPipeline.from_artifacts(trained.manifest_path.parent)
    students = [student, *random_students(2000, seed=9).to_dict("records")]
    for cut, policy in ((50.0, "all_details"), (62.5, "all_details"), (50.0, "scores_only")):
        bands = Bands(cut, policy)
        for record in students:
            text, score = single_answer_json(pipeline, record, bands)
            answer = single_answer(pipeline, record, bands)
            assert text == json.dumps(answer) and score == answer["math_score"]


def test_single_answer_and_batch_items_agree_to_the_last_digit(trained):
    from src.web.answers import batch_answer

    pipeline = PredictPipeline.from_artifacts(trained.manifest_path.parent)
    students = random_students(500, seed=4).to_dict("records")
    for policy in ("all_details", "scores_only"):
        bands = Bands(50.0, policy)
        items = batch_answer(pipeline, students, bands).items
        for record, item in zip(students, items, strict=True):
            single = single_answer(pipeline, record, bands)
            assert item == {k: v for k, v in single.items() if k != "model_version"}

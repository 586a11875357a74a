"""The API's models (src/web/contract.py) say what the server does: the JSON student model accepts what the
validator accepts, and every answer the app gives is an instance of its model with no field left unlisted."""

from __future__ import annotations

import pydantic
import pytest

from src.validation import validate_student
from src.web import contract

STUDENT_CASES = [
    {},
    {"gender": "Female"},
    {"race_ethnicity": " group B"},
    {"reading_score": "72"},
    {"reading_score": True},
    {"reading_score": 150},
    {"reading_score": -0.5},
    {"writing_score": None},
    {"writing_score": 100},
    {"writing_score": 0.0},
    {"lunch": ["standard"]},
    {"extra": 1},
]


@pytest.mark.parametrize("changes", STUDENT_CASES, ids=repr)
def test_the_json_student_model_accepts_what_the_validator_accepts(student, changes):
    raw = {**student, **changes}
    try:
        contract.Student.model_validate(raw)
        modelled = True
    except pydantic.ValidationError:
        modelled = False
    record, _ = validate_student(raw)
    assert modelled == (record is not None), raw


def _no_extra(model: pydantic.BaseModel) -> list[str]:
    """Every key an answer holds that its model does not list, anywhere inside it."""
    found = [f"{type(model).__name__}.{k}" for k in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
        for item in items:
            nested = item.values() if isinstance(item, dict) else [item]
            found += [key for inner in nested if isinstance(inner, pydantic.BaseModel) for key in _no_extra(inner)]
    return found


def test_every_answer_is_an_instance_of_its_model_with_every_field_listed(client, student):
    single = client.post("/predictdata", json=student).get_json()
    labeled = client.post("/predictdata", json={"instances": [{**student, "math_score": 70}, student]}).get_json()
    header = ",".join(["student_id", *student])
    rows = [",".join(["S1", *map(str, student.values())]), ",".join(["S2", *map(str, {**student, "gender": "x"}.values())])]
    roster = client.post("/predictdata", data="\n".join([header, *rows]) + "\n", content_type="text/csv").get_json()
    refused = client.post("/predictdata", json={**student, "gender": "x"})
    answers = [
        (contract.SinglePrediction, single),
        (contract.BatchPrediction, labeled),
        (contract.BatchPrediction, roster),
        (contract.ValidationFailed, refused.get_json()),
        (contract.ModelCard, client.get("/model.json").get_json()),
        (contract.Ready, client.get("/ready").get_json()),
    ]
    assert refused.status_code == 422 and isinstance(roster["predictions"][1].get("row"), int)
    for model, answer in answers:
        assert _no_extra(model.model_validate(answer)) == [], model.__name__
    unlisted = {**single, "band": {**single["band"], "colour": "green"}}  # the check finds a key nobody listed
    assert _no_extra(contract.SinglePrediction.model_validate(unlisted)) == ["Band.colour"]
    typed = contract.BatchPrediction.model_validate(roster)
    assert isinstance(typed.predictions[0], contract.Prediction) and isinstance(typed.predictions[1], contract.RowError)
    assert isinstance(contract.BatchPrediction.model_validate(labeled).evaluation, contract.Evaluation)


def test_every_json_field_of_the_answer_table_is_a_typed_field_of_the_answer_model():
    """The answer model is made from ANSWER_FIELDS: each field with a JSON place is reached by its path."""
    from src.answers.columns import ANSWER_FIELDS

    for field in ANSWER_FIELDS:
        if field.json is None:
            continue
        model = contract.SinglePrediction
        *groups, key = field.json
        for group in groups:
            annotation = model.model_fields[group].annotation
            model = next(a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type))
        assert key in model.model_fields, field.json
        assert model.model_fields[key].annotation not in (None, object), field.json

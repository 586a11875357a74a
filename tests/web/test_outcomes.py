"""Class lists and JSON batches with the students' real math scores: per-row outcomes and the class evaluation."""

import csv
import io

import pytest

from src.answers.bands import BAND_NAMES

CUT = 50.0


def _post_csv(client, text: str, accept: str = "application/json"):
    return client.post("/predictdata", data=text.encode(), headers={"Content-Type": "text/csv", "Accept": accept})


def _class_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _labeled_class(student: dict, reals: list) -> list[dict]:
    rows = []
    for i, real in enumerate(reals):
        rows.append({**student, "reading_score": 40 + i, "writing_score": 42 + i, "math score": real})
    return rows


def recompute(items: list[dict], reals: list[float | None], cut: float) -> dict:
    """MAE, bias, coverage and the band table from the answers as sent and the real scores, independently."""
    pairs = [(item, real) for item, real in zip(items, reals, strict=True) if real is not None and "math_score" in item]
    errors = [item["math_score"] - real for item, real in pairs]
    table = {band: {"below_cut": 0, "at_or_above_cut": 0} for band in BAND_NAMES}
    for item, real in pairs:
        table[item["band"]["name"]]["below_cut" if real < cut else "at_or_above_cut"] += 1
    return {
        "students": len(pairs),
        "mae": sum(abs(e) for e in errors) / len(pairs),
        "bias": sum(errors) / len(pairs),
        "coverage": sum(item["interval"]["low"] <= real <= item["interval"]["high"] for item, real in pairs) / len(pairs),
        "bands": table,
    }


def _check_against_recomputed(evaluation: dict, items: list[dict], reals: list) -> None:
    expected = recompute(items, reals, CUT)
    assert evaluation["students"] == expected["students"]
    assert evaluation["mae"] == pytest.approx(expected["mae"], abs=1e-9)
    assert evaluation["bias"] == pytest.approx(expected["bias"], abs=1e-9)
    assert evaluation["coverage"] == pytest.approx(expected["coverage"], abs=1e-12)
    assert evaluation["bands"] == expected["bands"]


def test_the_public_download_posted_as_a_class_list_gets_outcomes_and_the_class_summary(client, shared_data, trained):
    text = (shared_data / "kaggle_format_sample.csv").read_text()
    response = _post_csv(client, text)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    reals = [float(row["math score"]) for row in csv.DictReader(io.StringIO(text))]
    items = body["predictions"]
    assert len(items) == len(reals) == 100
    for item, real in zip(items, reals, strict=True):
        assert item["real_math_score"] == real
        assert item["prediction_minus_real"] == pytest.approx(item["math_score"] - real, abs=0.006)
        assert item["inside_range"] == (item["interval"]["low"] <= real <= item["interval"]["high"])
        band = item["band"]["name"]
        expected = None if band == "uncertain" else (real < CUT) == (band == "needs_support")
        assert item["band_right"] == expected
    evaluation = body["evaluation"]
    _check_against_recomputed(evaluation, items, reals)
    test = trained.manifest["metrics"]["test"]
    assert (
        evaluation["test_split"]["mae"] == test["mae"] and evaluation["test_split"]["coverage"] == test["interval_coverage"]
    )
    assert evaluation["cut"] == CUT
    assert evaluation["test_split"]["bands"] is not None


def test_a_labeled_class_with_blank_and_broken_real_scores(client, student):
    rows = _labeled_class(student, [55, "", 61.5, "7,5", 140, "abc", 48])
    response = _post_csv(client, _class_csv(rows))
    assert response.status_code == 200
    body = response.get_json()
    items = body["predictions"]
    assert items[1]["real_math_score"] is None and items[1]["inside_range"] is None and "math_score" in items[1]
    # spreadsheet rows (the header is row 1), the field by its label on the page
    assert items[3]["error"] == "row 5: Math score (0-100): must be written with a point, not a comma: 7.5"
    assert items[4]["error"] == "row 6: Math score (0-100): must be a number between 0 and 100"
    assert items[5]["error"] == "row 7: Math score (0-100): must be a number between 0 and 100"
    reals = [55.0, None, 61.5, None, None, None, 48.0]
    _check_against_recomputed(body["evaluation"], items, reals)
    assert body["evaluation"]["students"] == 3


def test_a_class_list_without_real_scores_has_no_evaluation(client, student):
    body = _post_csv(client, _class_csv([student, student])).get_json()
    assert "evaluation" not in body and "real_math_score" not in body["predictions"][0]


def test_a_json_batch_with_real_scores_gets_the_evaluation(client, student):
    instances = [
        {**student, "math_score": 70},
        {**student, "reading_score": 30, "writing_score": 35},
        {**student, "reading_score": 90, "writing_score": 88, "math_score": None},
        {**student, "reading_score": 55, "writing_score": 50, "math score": 52.5},
    ]
    body = client.post("/predictdata", json={"instances": instances}).get_json()
    items = body["predictions"]
    assert [i["real_math_score"] for i in items] == [70.0, None, None, 52.5]
    _check_against_recomputed(body["evaluation"], items, [70.0, None, None, 52.5])


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: text.encode("utf-8"),
        lambda text: text.replace('"math_score"', '"math\\u005fscore"').encode("utf-8"),  # the key spelt by an escape
        lambda text: text.encode("utf-16"),
    ],
    ids=["plain", "escaped key", "utf-16"],
)
def test_a_real_score_is_found_however_the_body_spells_its_key(client, student, encode):
    import json

    text = json.dumps({"instances": [{**student, "math_score": 70}, student]})
    answer = client.post("/predictdata", data=encode(text), content_type="application/json")
    assert answer.status_code == 200, answer.get_data()[:300]
    assert [i["real_math_score"] for i in answer.get_json()["predictions"]] == [70.0, None]


@pytest.mark.parametrize(
    ("real", "message"),
    [
        ("70", "must be a number between 0 and 100"),
        (101, "must be a number between 0 and 100"),
        (True, "must be a number between 0 and 100"),
    ],
)
def test_a_json_batch_with_a_broken_real_score_is_refused_naming_the_field(client, student, real, message):
    response = client.post("/predictdata", json={"instances": [student, {**student, "math_score": real}]})
    assert response.status_code == 422
    assert response.get_json()["details"] == [{"index": 1, "field": "math_score", "message": message}]


def test_a_real_score_given_under_both_header_styles_is_refused(client, student):
    response = client.post("/predictdata", json={"instances": [{**student, "math_score": 50, "math score": 50}]})
    assert response.status_code == 422
    assert response.get_json()["details"][0]["field"] == "math score"


def test_the_csv_answer_of_a_labeled_class_has_the_outcome_columns(client, student):
    rows = _labeled_class(student, [55, "", 61.5])
    response = _post_csv(client, _class_csv(rows), accept="text/csv")
    table = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert table[0]["real_math_score"] == "55" and table[1]["real_math_score"] == ""
    assert table[0]["inside_range"] in ("yes", "no") and table[1]["inside_range"] == ""
    assert float(table[2]["prediction_minus_real"]) == pytest.approx(
        float(table[2]["predicted_math_score"]) - 61.5, abs=0.006
    )
    assert "math_score" not in table[0]  # the prediction is predicted_math_score, the real one real_math_score


def _upload(client, text: str):
    return client.post(
        "/predictdata",
        data={"upload": "class_list", "class_list": (io.BytesIO(text.encode()), "class.csv")},
        content_type="multipart/form-data",
    )


def test_the_page_says_how_the_predictions_did_in_plain_words(client, student):
    body = client.post("/predictdata", json={"instances": [student] * 27}).get_json()
    score = body["predictions"][0]["math_score"]
    reals = [round(score, 1)] * 25 + [0, 100]  # 25 of 27 inside the range
    rows = [{**student, "math score": r} for r in reals]
    page = _upload(client, _class_csv(rows)).get_data(as_text=True)
    assert "For your 27 students with a real score, the prediction was off by" in page
    assert "25 of 27 real scores were within the range" in page
    assert 'id="coverage-flag"' not in page
    assert 'id="band-check"' in page


def test_the_page_flags_calmly_a_class_where_the_range_held_clearly_less_often(client, student):
    body = client.post("/predictdata", json={"instances": [student] * 27}).get_json()
    score = body["predictions"][0]["math_score"]
    reals = [0] * 10 + [round(score, 1)] * 17  # 17 of 27 inside: P < 0.01 at a 90 % level
    page = _upload(client, _class_csv([{**student, "math score": r} for r in reals])).get_data(as_text=True)
    assert 'id="coverage-flag"' in page
    assert "17 of 27 is clearly fewer than 90%" in page
    assert 'role="alert"' not in page.split('id="class-evaluation"')[1].split("</section>")[0]

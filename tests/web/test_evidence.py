"""The evidence line as a teacher reads it: the student's score, the average it is compared with, the effect."""

from __future__ import annotations

import io
import json
import re
from html import unescape

from src.answers.factors import describe_factor


def test_each_evidence_line_gives_the_score_the_average_and_the_effect_as_separate_numbers(client, student, trained):
    means = json.loads(trained.manifest_path.read_text())["explanation"]["feature_means"]
    for reading, writing in ((41, 44), (72, 74), (95, 30)):
        record = {**student, "reading_score": reading, "writing_score": writing}
        api = client.post("/predictdata", json=record).get_json()
        html = unescape(client.get("/predictdata", query_string=record).get_data(as_text=True))
        for name, label, value in (("reading_score", "Reading score", reading), ("writing_score", "Writing score", writing)):
            line = " ".join(html.split(f'id="evidence-{name}">')[1].split("</li>")[0].split())
            text = re.sub(r"<[^>]+>", "", line)
            points = round(api["factors"]["contributions"][name])
            unit = "point" if abs(points) == 1 else "points"
            moved = f"{'raises' if points > 0 else 'lowers'} the prediction by {abs(points)} {unit}"
            effect = "changes the prediction by less than half a point" if points == 0 else moved
            assert text == f"{label} {value} (average {round(means[name])}): {effect}"
            # the same words in the CSV's top_factor
            assert describe_factor(name, value, api["factors"]["contributions"][name], means[name]) == text


def test_the_class_table_shows_both_scores_not_a_stronger_score_word(client, student):
    text = "reading_score,writing_score,gender,race_ethnicity,parental_level_of_education,lunch,test_preparation_course\n"
    text += f"41,68,{student['gender']},{student['race_ethnicity']},high school,standard,none\n"
    page = client.post(
        "/predictdata",
        data={"class_list": (io.BytesIO(text.encode()), "c.csv"), "upload": "class_list"},
        content_type="multipart/form-data",
    ).get_data(as_text=True)
    assert '<td data-label="Reading">41</td>' in page and '<td data-label="Writing">68</td>' in page
    assert "Stronger score" not in page


def upload_named(client, text, name):
    return client.post(
        "/predictdata",
        data={"class_list": (io.BytesIO(text.encode()), "c.csv"), "upload": "class_list", "class_name": name},
        content_type="multipart/form-data",
    )


def test_a_class_name_is_in_the_heading_the_title_and_the_file_name_and_a_bad_one_is_named(client, student):
    from src.answers.fast_path import random_students

    rows = random_students(40, 5).to_dict("records")
    names = list(rows[0])
    text = ",".join(names) + "\n" + "\n".join(",".join(str(r[n]) for n in names) for r in rows) + "\n"
    page = upload_named(client, text, "  7B  maths ").get_data(as_text=True)
    assert 'Class results, 7B maths: <span id="title-count">40 students</span>' in page
    assert "<title>Class results, 7B maths – Predict a math score</title>" in page
    assert re.search(r'download="class-predictions-7B-maths-\d{4}-\d{2}-\d{2}\.csv"', page)
    # "could be either side" says which way it leans, from the chance
    rows = [row.split("</tr>")[0] for row in page.split("<tr data-row=")[1:]]
    leans = [
        (re.search(r'data-chance="([0-9.]+)"', row).group(1), re.search(r'<span class="lean">([^<]+)</span>', row).group(1))
        for row in rows
        if 'data-band="uncertain"' in row
    ]
    assert leans and all('class="lean"' not in row for row in rows if 'data-band="uncertain"' not in row)
    for chance, words in leans:
        expected = "leans below 50" if float(chance) >= 0.6 else "leans to 50 or above" if float(chance) <= 0.4 else None
        assert words == (expected or "as likely below 50 as not")
    refused = upload_named(client, text, "x" * 61)
    assert refused.status_code == 422 and "Class name: must be at most 60 characters, got 61" in refused.get_data(
        as_text=True
    )


def test_class_evaluation_words_count_one_student_in_the_singular():
    from src.web.outcomes import _marked

    assert _marked(1, 1, "very likely below 50", "below 50") == (
        "of the 1 student marked “very likely below 50”, 1 really was below 50"
    )
    assert _marked(12, 11, "very likely 50 or above", "50 or above") == (
        "of the 12 students marked “very likely 50 or above”, 11 really were 50 or above"
    )


def test_the_band_guide_says_what_the_cut_is(client, student):
    html = client.get("/predictdata", query_string=student).get_data(as_text=True)
    said = " ".join(html.split('id="cut-defined">')[1].split("</p>")[0].split())
    assert said.startswith("The cut, 50, is the math score below which your school offers support")


def test_the_model_page_speaks_plainly(client):
    html = client.get("/model").get_data(as_text=True)
    for jargon in ("calibration gap", "Brier score", "logistic regression", "Champions and decisions"):
        assert jargon not in html, jargon
    assert 'alt="Each test student&#39;s predicted math score against the real one' in html
    assert "the file of past students the model\n    learned from" in html
    assert re.search(r'id="plain-ece">\d+\.\d</span>', html)  # one decimal: 4.6 and 4.9 are not a tie

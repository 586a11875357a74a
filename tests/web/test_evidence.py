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

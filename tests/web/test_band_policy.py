"""BAND_POLICY: bands (and the chance below the cut) from every detail, or from the scores and course alone."""

from __future__ import annotations

import io
import itertools
from html import unescape
from pathlib import Path

import pytest

from src.config import AppConfig, ConfigError
from src.schema import BACKGROUND_FEATURES, CATEGORICAL_FEATURES, FEATURE_NAMES

SCORES = (30, 42, 48, 52, 58, 70)


def every_student():
    """Every combination of the categories, for a spread of reading and writing scores near and far from the cut."""
    names = [f.name for f in CATEGORICAL_FEATURES]
    for values in itertools.product(*(f.categories for f in CATEGORICAL_FEATURES)):
        for reading, writing in itertools.product(SCORES, SCORES):
            yield {**dict(zip(names, values, strict=True)), "reading_score": reading, "writing_score": writing}


def scores_key(student):
    return tuple(student[n] for n in FEATURE_NAMES if n not in BACKGROUND_FEATURES)


def policy_client(trained, tmp_path, policy):
    from app import create_app

    config = AppConfig(artifacts_dir=Path(trained.store), drift_dir=tmp_path / policy, band_policy=policy)
    return create_app(config).test_client()


def test_with_scores_only_no_band_or_chance_changes_with_background_details_alone(trained, tmp_path):
    client = policy_client(trained, tmp_path, "scores_only")
    students = list(every_student())
    assert len(students) == 120 * 2 * len(SCORES) ** 2
    seen: dict[tuple, tuple] = {}
    for start in range(0, len(students), 5000):
        part = students[start : start + 5000]
        body = client.post("/predictdata", json={"instances": part}).get_json()
        for student, item in zip(part, body["predictions"], strict=True):
            assert item["band"]["policy"] == "scores_only"
            assert item["band"]["name"] == item["band_without_background"]
            decided = (item["band"]["name"], item["below_cut_probability"])
            assert seen.setdefault(scores_key(student), decided) == decided, student
    assert {band for band, _ in seen.values()} == {"needs_support", "uncertain", "on_track"}
    # one student at a time, and the class list, answer the same
    for student in students[:: len(students) // 40]:
        one = client.post("/predictdata", json=student).get_json()
        assert (one["band"]["name"], one["below_cut_probability"]) == seen[scores_key(student)]
        assert one["band"]["policy"] == "scores_only"


def test_with_all_details_the_background_can_decide_and_the_answer_says_which_policy_did(trained, tmp_path):
    client = policy_client(trained, tmp_path, "all_details")
    students = list(every_student())[:5000]
    items = client.post("/predictdata", json={"instances": students}).get_json()["predictions"]
    assert {item["band"]["policy"] for item in items} == {"all_details"}
    by_scores: dict[tuple, set] = {}
    for student, item in zip(students, items, strict=True):
        by_scores.setdefault(scores_key(student), set()).add(item["band"]["name"])
    assert any(len(bands) > 1 for bands in by_scores.values())  # the background alone moved a band


def background_decided(client):
    students = list(every_student())[:5000]
    items = client.post("/predictdata", json={"instances": students}).get_json()["predictions"]
    return next(s for s, i in zip(students, items, strict=True) if i["band_without_background"] != i["band"]["name"])


def test_the_page_says_beside_the_band_that_the_background_decided_it_with_its_own_next_step(trained, tmp_path):
    client = policy_client(trained, tmp_path, "all_details")
    student = background_decided(client)
    html = unescape(client.get("/predictdata", query_string=student).get_data(as_text=True))
    assert html.index('id="band"') < html.index('id="band-flip"') < html.index('id="next-step"')
    step = html.split('id="next-step-text">')[1].split("<")[0]
    assert step.startswith("The background details, not the scores, decided this band")
    assert "Band and chance decided from every detail entered" in html.split('id="band-policy">')[1].split("</p>")[0]
    assert "reason to act" not in html
    # the same student under scores_only: no flip, the policy named, the deciding range given
    scores_only = policy_client(trained, tmp_path, "scores_only")
    html = unescape(scores_only.get("/predictdata", query_string=student).get_data(as_text=True))
    policy = html.split('id="band-policy">')[1].split("</p>")[0]
    assert 'id="band-flip"' not in html and "from the reading and writing scores and the course alone" in policy
    assert "With the background details\n    at their average the range is" in policy


def test_the_class_page_and_csv_follow_the_policy(trained, tmp_path):
    client = policy_client(trained, tmp_path, "scores_only")
    students = list(every_student())[:600]
    header = ",".join(FEATURE_NAMES)
    text = header + "\n" + "\n".join(",".join(str(s[n]) for n in FEATURE_NAMES) for s in students) + "\n"
    table = client.post(
        "/predictdata", data=text.encode(), headers={"Content-Type": "text/csv", "Accept": "text/csv"}
    ).get_data(as_text=True)
    rows = [line.split(",") for line in table.splitlines()[1:]]
    at = table.splitlines()[0].split(",").index("band")
    bands: dict[tuple, str] = {}
    for student, row in zip(students, rows, strict=True):
        assert bands.setdefault(scores_key(student), row[at]) == row[at]
    page = client.post(
        "/predictdata",
        data={"class_list": (io.BytesIO(text.encode()), "class.csv"), "upload": "class_list"},
        content_type="multipart/form-data",
    ).get_data(as_text=True)
    assert "from the reading and writing scores and the course alone" in unescape(page)
    assert 'id="background-decided"' not in page


def test_a_band_policy_that_is_not_one_of_the_two_is_refused_at_start():
    with pytest.raises(ConfigError, match="BAND_POLICY must be one of all_details, scores_only, got 'scores'"):
        AppConfig.from_env({"BAND_POLICY": "scores"})
    assert AppConfig.from_env({}).band_policy == "all_details"
    assert AppConfig.from_env({"BAND_POLICY": "scores_only"}).band_policy == "scores_only"

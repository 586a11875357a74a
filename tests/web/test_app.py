import json
import re
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest

from src.config import AppConfig
from src.web.wording import whole_points

# A number written as minus zero ("-0", "-0.0"), not a hyphen inside a word such as a model version ("...Z-0158efa0").
SIGNED_ZERO = re.compile(r"(?<![\w-])-0(?:\.0+)?(?![\w.])")


def form_of(student):
    return {k: str(v) for k, v in student.items()}


def test_landing_page_links_to_the_form(client):
    response = client.get("/")
    assert response.status_code == 200 and b'href="/predictdata"' in response.data


def test_form_has_a_field_per_feature_with_choices_and_ranges(client):
    html = client.get("/predictdata").get_data(as_text=True)
    for name in ("gender", "race_ethnicity", "parental_level_of_education", "lunch", "test_preparation_course"):
        assert f'<select id="{name}" name="{name}"' in html
    for name in ("reading_score", "writing_score"):  # text, so that the server sees exactly what was typed
        assert re.search(rf'<input id="{name}" name="{name}" type="text" [^>]*required', html)
    assert "Parents&#39; highest level of education" in html and '<option value="group E"' in html


def test_json_single_student(client, student, trained):
    response = client.post("/predictdata", json=student)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {
        "math_score",
        "interval",
        "model_version",
        "band",
        "below_cut_probability",
        "band_without_background",
        "factors",
    }
    assert 0 < body["below_cut_probability"] < 1 and body["band_without_background"] in (
        "needs_support",
        "uncertain",
        "on_track",
    )
    assert body["interval"]["low"] <= body["math_score"] <= body["interval"]["high"]
    assert body["interval"]["level"] == 0.9 and body["model_version"] == trained.manifest["model_version"]


def test_form_and_json_give_the_same_score(client, student):
    json_score = client.post("/predictdata", json=student).get_json()
    html = client.post("/predictdata", data=form_of(student), follow_redirects=True).get_data(as_text=True)
    assert f'<strong id="math-score">{whole_points(json_score["math_score"])}</strong>' in html
    assert f'<strong id="interval-low">{whole_points(json_score["interval"]["low"], 50, "low")}</strong>' in html


def test_batch_of_students(client, student):
    other = {**student, "gender": "male", "reading_score": 40}
    body = client.post("/predictdata", json={"instances": [student, other, student]}).get_json()
    assert len(body["predictions"]) == 3 and body["model_version"]
    single = client.post("/predictdata", json=student).get_json()
    assert body["predictions"][0] == {k: v for k, v in single.items() if k != "model_version"}
    assert body["predictions"][1]["math_score"] != single["math_score"]


def test_batch_errors_name_index_and_field(client, student):
    response = client.post("/predictdata", json={"instances": [student, {**student, "writing_score": -1}]})
    assert response.status_code == 422
    assert response.get_json() == {
        "error": "validation_failed",
        "details": [{"index": 1, "field": "writing_score", "message": "must be a number between 0 and 100"}],
    }


@pytest.mark.parametrize(
    ("change", "remove", "field", "message"),
    [
        ({}, "reading_score", "reading_score", "is required"),
        ({"gender": "unknown"}, None, "gender", "must be one of: female, male"),
        ({"reading_score": "high"}, None, "reading_score", "must be a number between 0 and 100"),
        ({"reading_score": "7,5"}, None, "reading_score", "must be a number between 0 and 100"),
        ({"writing_score": 120}, None, "writing_score", "must be a number between 0 and 100"),
        ({"favourite_colour": "blue"}, None, "favourite_colour", "is not an accepted field"),
    ],
)
def test_each_bad_field_gets_422_naming_it(client, student, change, remove, field, message):
    raw = {**student, **change}
    if remove:
        raw.pop(remove)
    response = client.post("/predictdata", json=raw)
    assert response.status_code == 422
    assert response.get_json() == {"error": "validation_failed", "details": [{"field": field, "message": message}]}


def test_form_errors_are_shown_by_field_with_values_kept(client, student):
    data = {**form_of(student), "reading_score": "150", "gender": ""}
    response = client.post("/predictdata", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "Location" not in response.headers
    assert 'id="reading_score-error">Reading score (0-100) must be a number between 0 and 100' in html
    assert 'id="gender-error">Gender is required' in html
    assert 'value="150"' in html and '<option value="group B" selected>' in html
    assert 'aria-describedby="gender-hint gender-error" aria-invalid="true"' in html
    assert 'aria-describedby="lunch-hint">' in html  # a valid field is not marked invalid
    assert 'role="alert"' in html and '<a href="#reading_score">' in html and "<title>Error: " in html


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"data": "{not json", "content_type": "application/json"}, 400, "malformed_json"),
        ({"data": "reading=1", "content_type": "text/plain"}, 415, "unsupported_media_type"),
        ({"json": [1, 2]}, 422, "validation_failed"),
        ({"json": {"instances": []}}, 422, "validation_failed"),
        ({"json": {"instances": "all"}}, 422, "validation_failed"),
    ],
)
def test_error_classes_answer_json(client, kwargs, status, error):
    response = client.post("/predictdata", **kwargs)
    assert response.status_code == status and response.mimetype == "application/json"
    assert response.get_json()["error"] == error


def test_body_too_large_is_413_json(store_dir, trained, tmp_path, student):
    from app import create_app

    app = create_app(AppConfig(artifacts_dir=store_dir, max_content_length=2048, drift_dir=tmp_path))
    response = app.test_client().post("/predictdata", json={"instances": [student] * 40})
    assert response.status_code == 413 and response.get_json()["error"] == "request_entity_too_large"


def test_batch_over_the_limit_is_413(store_dir, trained, tmp_path, student):
    from app import create_app

    app = create_app(AppConfig(artifacts_dir=store_dir, max_batch=5, drift_dir=tmp_path))
    response = app.test_client().post("/predictdata", json={"instances": [student] * 6})
    assert response.status_code == 413
    assert response.get_json()["message"] == "at most 5 students per request, got 6"


def test_batch_of_ten_thousand_is_accepted(client, student):
    response = client.post("/predictdata", json={"instances": [student] * 10_000})
    assert response.status_code == 200 and len(response.get_json()["predictions"]) == 10_000


def test_health_and_ready(client, trained):
    assert client.get("/health").status_code == 200
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.get_json()["model_version"] == trained.manifest["model_version"]


def test_without_artifacts_the_app_starts_and_answers_503(tmp_path, student):
    from app import create_app

    client = create_app(AppConfig(artifacts_dir=tmp_path / "empty", drift_dir=tmp_path)).test_client()
    assert client.get("/health").status_code == 200
    ready = client.get("/ready")
    assert ready.status_code == 503 and "has no champion yet" in ready.get_json()["message"]
    response = client.post("/predictdata", json=student)
    assert response.status_code == 503 and response.get_json()["error"] == "model_unavailable"
    form = client.post("/predictdata", data=form_of(student))
    assert form.status_code == 503 and "not available" in form.get_data(as_text=True)
    page = client.get("/predictdata", query_string=form_of(student))
    assert page.status_code == 503 and "not available" in page.get_data(as_text=True)


def test_tampered_model_means_503_with_the_reason(store_copy, trained, tmp_path):
    from app import create_app

    (store_copy / trained.version / "model.pkl").write_bytes(b"not a model")
    client = create_app(AppConfig(artifacts_dir=store_copy, drift_dir=tmp_path)).test_client()
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert "model.pkl does not match its manifest" in ready.get_json()["message"]


def test_unknown_page_is_404_html_for_browsers_and_json_for_clients(client):
    assert client.get("/nope", headers={"Accept": "text/html"}).status_code == 404
    response = client.get("/nope", headers={"Accept": "application/json"})
    assert response.status_code == 404 and response.get_json()["error"] == "not_found"


def test_json_body_with_nan_is_refused_not_crashing(client, student):
    body = json.dumps({**student}).replace('"reading_score": 72', '"reading_score": NaN')
    response = client.post("/predictdata", data=body, content_type="application/json")
    assert response.status_code == 422 and response.get_json()["details"][0]["field"] == "reading_score"


def test_each_worker_picks_up_a_newly_promoted_model_by_itself(store_copy, tmp_path, student):
    import time

    from app import create_app
    from src.lifecycle.decision import DecisionConfig
    from src.lifecycle.training import TrainingConfig, train
    from tests.conftest import FAST_MODELS

    app = create_app(AppConfig(artifacts_dir=store_copy, drift_dir=tmp_path / "d", model_refresh_seconds=0.2))
    client = app.test_client()
    first = client.get("/ready").get_json()["model_version"]  # this request starts the refresher
    second = train(
        TrainingConfig(
            store=store_copy,
            synthetic_rows=300,
            cv_folds=3,
            seed=13,
            runs_dir=tmp_path / "r",
            candidates=FAST_MODELS,
            tracking=False,
            n_jobs=1,
            decision=DecisionConfig(tolerance=1.0),
        )
    )
    assert second.decision.promoted, second.decision
    assert second.manifest["model_version"] != first
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and client.get("/ready").get_json()["model_version"] == first:
        time.sleep(0.1)
    assert client.get("/ready").get_json()["model_version"] == second.manifest["model_version"]
    assert client.post("/predictdata", json=student).get_json()["model_version"] == second.manifest["model_version"]


def test_json_answer_carries_band_and_factors_that_add_up(client, student, app_config):
    body = client.post("/predictdata", json=student).get_json()
    low, high = body["interval"]["low"], body["interval"]["high"]
    expected = "needs_support" if high < 50 else "on_track" if low >= 50 else "uncertain"
    assert body["band"]["name"] == expected and body["band"]["cut"] == app_config.support_cut == 50.0
    factors = body["factors"]
    assert list(factors["contributions"]) == [
        "gender",
        "race_ethnicity",
        "parental_level_of_education",
        "lunch",
        "test_preparation_course",
        "reading_score",
        "writing_score",
    ]
    assert abs(factors["baseline"] + sum(factors["contributions"].values()) - factors["unclipped_score"]) <= 1e-6
    assert body["math_score"] == round(min(max(factors["unclipped_score"], 0), 100), 1)
    ready = client.get("/ready").get_json()["factors"]
    assert ready == {
        "available": True,
        "method": "additive",
        "baseline": factors["baseline"],
        "baseline_is": "mean prediction on the training split",
    }


def test_bands_follow_the_configured_cut(trained, tmp_path, student):
    from app import create_app

    score = (
        create_app(AppConfig(artifacts_dir=Path(trained.store), drift_dir=tmp_path / "a"))
        .test_client()
        .post("/predictdata", json=student)
        .get_json()["interval"]
    )
    for cut, band in [(score["low"], "on_track"), (score["high"] + 0.1, "needs_support"), (score["high"], "uncertain")]:
        app = create_app(AppConfig(artifacts_dir=Path(trained.store), support_cut=cut, drift_dir=tmp_path / "b"))
        body = app.test_client().post("/predictdata", json={"instances": [student]}).get_json()
        assert body["predictions"][0]["band"] == {
            "name": band,
            "label": body["predictions"][0]["band"]["label"],
            "cut": cut,
            "policy": "all_details",
        }


@pytest.mark.parametrize("course", ["none", "completed"])
def test_the_result_rests_on_the_scores_and_lists_the_course_and_background_as_associations(client, student, course):
    html = unescape(
        client.post(
            "/predictdata", data=form_of({**student, "test_preparation_course": course}), follow_redirects=True
        ).get_data(as_text=True)
    )
    assert 'id="band"' in html and "for 9 in 10 students like this one" in html
    evidence = html.split('<ul id="evidence">')[1].split("</ul>")[0]
    assert evidence.count("<li ") == 2 and evidence.count("the prediction by") == 2
    assert re.search(
        r"Reading score\s+<strong>72</strong></span> <span class=\"evidence-average\">\(average \d+\)", evidence
    )
    assert re.search(
        r"Writing score\s+<strong>74</strong></span> <span class=\"evidence-average\">\(average \d+\)", evidence
    )
    for other in ("Test preparation", "course", "Gender", "Race", "Lunch", "Parents"):
        assert other not in evidence
    associations = html.split('id="associations">')[1].split("</p>")[0]
    assert "Test preparation and the background" in associations and "not an effect of the course" in associations
    assert "reason to act" not in associations and "never a reason to expect less" in associations
    assert "Under this school's setting they count in the band" in associations
    assert "a prediction, not a grade" in html and 'id="next-student"' in html
    assert not SIGNED_ZERO.search(html), "a number shown as -0"


def test_the_band_the_chance_in_words_and_the_next_step_show_without_a_click(client, student):
    api = client.post("/predictdata", json=student).get_json()
    html = unescape(client.post("/predictdata", data=form_of(student), follow_redirects=True).get_data(as_text=True))
    chance = html.split('id="chance">')[1].split("<")[0]
    expected = round(api["below_cut_probability"] * 10)
    assert re.fullmatch(
        r"(About \d+ in 10|About \d+ in 100|Under 1 in 100|Over 99 in 100) students like this one "
        r"score below 50\.",
        chance,
    ), chance
    if 0.095 <= api["below_cut_probability"] <= 0.905:
        assert chance.startswith(f"About {expected} in 10 ")
    step = html.split('id="next-step"')[1].split("</div>")[0]
    assert AppConfig().next_step(api["band"]["name"]) in step and "<details" not in step
    assert html.index('id="next-step"') < html.index("<details")  # under the band, not inside a folded box


def test_a_school_sets_the_next_step_and_its_link(store_dir, tmp_path, student):
    from app import create_app

    config = AppConfig(
        artifacts_dir=store_dir,
        drift_dir=tmp_path / "d",
        next_step_link="https://school.example/help",
        next_step_link_text="Our support plan",
        next_step_needs_support="Tell Ms Ortiz today.",
        next_step_uncertain="Tell Ms Ortiz this week.",
        next_step_on_track="Nothing to do.",
    )
    client = create_app(config).test_client()
    html = client.post("/predictdata", data=form_of(student), follow_redirects=True).get_data(as_text=True)
    band = client.post("/predictdata", json=student).get_json()["band"]["name"]
    assert config.next_step(band) in html.split('id="next-step-text">')[1].split("<")[0]
    assert '<a id="next-step-link" href="https://school.example/help">Our support plan</a>' in html


def test_a_student_whose_band_background_decided_is_told_so_in_one_sentence(client):
    from src.answers.fast_path import random_students

    students = random_students(400, seed=5)
    for name in ("reading_score", "writing_score"):
        students[name] = students[name].round()
    records = students.to_dict("records")
    answers = client.post("/predictdata", json={"instances": records}).get_json()["predictions"]
    flipped = [(r, a) for r, a in zip(records, answers, strict=True) if a["band_without_background"] != a["band"]["name"]]
    kept = [(r, a) for r, a in zip(records, answers, strict=True) if a["band_without_background"] == a["band"]["name"]]
    assert flipped and kept
    titles = {"needs_support": "Needs support", "uncertain": "Could be either side", "on_track": "On track"}
    record, answer = flipped[0]
    html = unescape(client.post("/predictdata", data=form_of(record), follow_redirects=True).get_data(as_text=True))
    sentence = html.split('id="band-flip">')[1].split("</p>")[0]
    assert "The background details decided this band." in sentence
    assert f"the band would be\n    “{titles[answer['band_without_background']]}”" in sentence
    html = client.post("/predictdata", data=form_of(kept[0][0]), follow_redirects=True).get_data(as_text=True)
    assert 'id="band-flip"' not in html


def test_every_page_says_when_the_model_learned_from_synthetic_students(client, student):
    pages = [
        client.get("/"),
        client.get("/predictdata"),
        client.post("/predictdata", data=form_of(student), follow_redirects=True),
        client.get("/no-such-page"),
    ]
    for response in pages:
        assert 'id="synthetic-notice"' in response.get_data(as_text=True), response.request.path


def test_friendly_404_and_a_favicon(client):
    missing = client.get("/no-such-page")
    assert missing.status_code == 404 and "We could not find that page" in missing.get_data(as_text=True)
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"


def test_pages_use_no_developer_words(client, student):
    for response in (client.get("/"), client.post("/predictdata", data=form_of(student), follow_redirects=True)):
        html = response.get_data(as_text=True)
        for word in ("R²", "ridge", "JSON", "POST", "linear_regression"):
            assert word not in html, word


@pytest.mark.parametrize(("field", "typed", "meant"), [("reading_score", "7,5", "7.5"), ("writing_score", "70,5", "70.5")])
def test_form_refuses_a_decimal_comma_at_its_field(client, student, field, typed, meant):
    response = client.post("/predictdata", data={**form_of(student), field: typed})
    html = response.get_data(as_text=True)
    label = "Reading score (0-100)" if field == "reading_score" else "Writing score (0-100)"
    assert response.status_code == 422 and "Location" not in response.headers
    assert f'id="{field}-error">{label} must be written with a point, not a comma: {meant}</p>' in html
    assert f'aria-describedby="{field}-hint {field}-error" aria-invalid="true"' in html
    assert f'value="{typed}"' in html and 'id="math-score"' not in html


def test_form_post_answers_303_to_the_result_page_with_the_student_as_query(client, student):
    response = client.post("/predictdata", data=form_of(student))
    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    assert location.path == "/predictdata"
    assert {k: v for k, (v,) in parse_qs(location.query).items()} == form_of(student)


def test_result_page_shows_what_the_api_answers_and_a_reload_shows_it_again(client, student):
    location = client.post("/predictdata", data=form_of(student)).headers["Location"]
    page = client.get(location)
    html = page.get_data(as_text=True)
    api = client.post("/predictdata", json=student).get_json()
    assert page.status_code == 200
    assert f'<strong id="math-score">{whole_points(api["math_score"])}</strong>' in html
    assert f'<strong id="interval-low">{whole_points(api["interval"]["low"], 50, "low")}</strong>' in html
    assert f'<strong id="interval-high">{whole_points(api["interval"]["high"], 50, "high")}</strong>' in html
    assert 'id="band"' in html and f"The real math score {api['band']['label'].replace('very', 'is very')}." in html
    assert '<ul id="evidence">' in html and f"Model version {api['model_version']}." in html
    assert 'id="next-student" href="/predictdata"' in html and 'id="synthetic-notice"' in html
    assert client.get(location).get_data(as_text=True) == html


def test_a_decimal_score_reads_back_exactly_from_the_result_address(client, student):
    sent = {**student, "reading_score": 72.35, "writing_score": 0.1}
    location = client.post("/predictdata", data=form_of(sent)).headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert query["reading_score"] == ["72.35"] and query["writing_score"] == ["0.1"]
    html = client.get(location).get_data(as_text=True)
    api = client.post("/predictdata", json=sent).get_json()
    assert f'<strong id="math-score">{whole_points(api["math_score"])}</strong>' in html


def test_the_form_without_query_is_empty(client):
    response = client.get("/predictdata")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="result"' not in html and 'id="error-summary"' not in html


@pytest.mark.parametrize(
    ("change", "shown"),
    [
        ({"writing_score": None}, 'id="writing_score-error">Writing score (0-100) is required'),
        ({"gender": "unknown"}, 'id="gender-error">Gender must be one of: female, male'),
        (
            {"reading_score": "7,5"},
            'id="reading_score-error">Reading score (0-100) must be written with a point, not a comma: 7.5',
        ),
        ({"reading_score": "150"}, 'id="reading_score-error">Reading score (0-100) must be a number between 0 and 100'),
        ({"shoe_size": "42"}, "<li>shoe_size is not an accepted field</li>"),
    ],
)
def test_result_address_with_a_bad_field_shows_the_form_with_its_error(client, student, change, shown):
    query = {k: v for k, v in {**form_of(student), **change}.items() if v is not None}
    response = client.get("/predictdata", query_string=query)
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and 'id="math-score"' not in html
    assert shown in html and 'id="error-summary" role="alert"' in html


def test_result_address_with_a_field_given_twice_is_refused(client, student):
    query = "&".join(f"{k}={v}" for k, v in form_of(student).items()) + "&reading_score=20"
    response = client.get(f"/predictdata?{query}")
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and 'id="math-score"' not in html
    assert 'id="reading_score-error">Reading score (0-100) is given more than once' in html


def test_json_and_csv_posts_are_answered_directly_not_redirected(client, student):
    single = client.post("/predictdata", json=student)
    batch = client.post("/predictdata", json={"instances": [student]})
    header = ",".join(student)
    rows = client.post("/predictdata", data=f"{header}\n{','.join(map(str, student.values()))}\n", content_type="text/csv")
    for response in (single, batch, rows):
        assert response.status_code == 200 and response.mimetype == "application/json"
        assert "Location" not in response.headers


def test_a_background_field_not_known_widens_the_range_to_cover_every_value(client, student):
    known = {**student, "parental_level_of_education": "not known", "lunch": "not known"}
    posted = client.post("/predictdata", data=form_of(known))
    assert posted.status_code == 303
    query = dict(parse_qsl(urlsplit(posted.headers["Location"]).query))
    assert query["parental_level_of_education"] == "not known" and query["lunch"] == "not known"
    html = unescape(client.get(posted.headers["Location"]).get_data(as_text=True))
    assert 'Not known: <span id="not-known">Parents\' highest level of education, Lunch</span>' in html
    assert "12 possibilities" in html
    low = float(html.split('id="interval-low">')[1].split("<")[0])
    high = float(html.split('id="interval-high">')[1].split("<")[0])
    widest = 0.0
    for education in (
        "some high school",
        "high school",
        "some college",
        "associate's degree",
        "bachelor's degree",
        "master's degree",
    ):
        for lunch in ("standard", "free/reduced"):
            one = client.post(
                "/predictdata", json={**student, "parental_level_of_education": education, "lunch": lunch}
            ).get_json()["interval"]
            assert low <= one["low"] and one["high"] <= high  # every possible student's range lies inside
            widest = max(widest, one["high"] - one["low"])
    assert high - low > widest  # wider than any single student's, honestly
    reasons = html.split('<ul id="evidence">')[1].split("</ul>")[0]
    assert re.search(r"Reading score\s+<strong>72</strong>", reasons) and "Parents" not in reasons
    assert client.get(posted.headers["Location"]).headers["Referrer-Policy"] == "no-referrer"


def test_only_background_fields_offer_not_known(client):
    html = client.get("/predictdata").get_data(as_text=True)
    for name in ("gender", "race_ethnicity", "parental_level_of_education", "lunch"):
        select = html.split(f'<select id="{name}"')[1].split("</select>")[0]
        assert 'value="not known"' in select, name
    select = html.split('<select id="test_preparation_course"')[1].split("</select>")[0]
    assert "not known" not in select


def test_not_known_is_refused_where_it_is_not_offered(client, student):
    response = client.post("/predictdata", data=form_of({**student, "test_preparation_course": "not known"}))
    assert response.status_code == 422
    assert "Test preparation course must be one of: none, completed" in response.get_data(as_text=True)
    api = client.post("/predictdata", json={**student, "lunch": "not known"})
    assert api.status_code == 422 and api.get_json()["details"][0]["field"] == "lunch"


def test_answers_with_fields_not_known_are_counted_but_kept_out_of_drift(client, student):
    from tests.web.test_metrics import families, value

    before = client.get("/drift").get_json()
    location = client.post("/predictdata", data=form_of({**student, "gender": "not known"})).headers["Location"]
    assert client.get(location).status_code == 200
    fams = families(client)
    assert value(fams, "model_predictions", channel="form") == 1
    for category in ("female", "male"):
        assert value(fams, "model_input_category", feature="gender", category=category) == 0
    counts = [s.value for s in fams["model_score_students"].samples if s.name.endswith("_total")]
    assert counts and not any(counts)  # neither the inputs nor the score entered the distributions
    assert client.get("/drift").get_json() == before  # nor the drift window


def test_a_query_without_student_fields_is_the_empty_form(client):
    response = client.get("/predictdata?utm_source=newsletter&fbclid=abc")
    assert response.status_code == 200 and 'id="result"' not in response.get_data(as_text=True)
    assert 'class="error"' not in response.get_data(as_text=True)


def test_result_pages_are_kept_by_no_shared_cache(client, student):
    location = client.post("/predictdata", data=form_of(student)).headers["Location"]
    assert client.get(location).headers["Cache-Control"] == "private, no-store"


def test_a_model_without_recorded_shares_offers_no_not_known_and_says_so_plainly(app, client, student):
    import dataclasses

    from src.web.services import services

    with app.app_context():
        slot = services().slot
        bare = slot.pipeline
        slot.pipeline = dataclasses.replace(bare, manifest={k: v for k, v in bare.manifest.items() if k != "explanation"})
    try:
        assert "not known" not in client.get("/predictdata").get_data(as_text=True).split("<form")[1]
        response = client.post("/predictdata", data=form_of({**student, "lunch": "not known"}))
        html = response.get_data(as_text=True)
        assert response.status_code == 409 and 'id="unknown-unsupported"' in html and "manifest" not in html
        assert (
            client.get(
                "/predictdata?" + "&".join(f"{k}={v}" for k, v in {**form_of(student), "lunch": "not known"}.items())
            ).status_code
            == 409
        )
    finally:
        with app.app_context():
            services().slot.pipeline = bare

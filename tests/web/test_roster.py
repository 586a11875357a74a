"""Class lists as CSV: POST /predictdata with text/csv, and the form's upload."""

import csv
import io
import re
from pathlib import Path

import pytest

from src.answers.fast_path import random_students
from src.config import AppConfig
from src.schema import FEATURE_NAMES, HEADER_ALIASES

PUBLIC = {v: k for k, v in HEADER_ALIASES.items()}  # schema name -> the public download's header


def students(n, seed=1):
    frame = random_students(n, seed)
    return frame.to_dict("records")


def to_csv(rows, header_style="snake", ids=None):
    out = io.StringIO()
    names = [PUBLIC.get(n, n) if header_style == "public" else n for n in FEATURE_NAMES]
    writer = csv.writer(out)
    writer.writerow((["student_id"] if ids else []) + names)
    for i, row in enumerate(rows):
        writer.writerow(([ids[i]] if ids else []) + [row[n] for n in FEATURE_NAMES])
    return out.getvalue()


def post_csv(client, text, accept="application/json", query=""):
    return client.post("/predictdata" + query, data=text.encode(), headers={"Content-Type": "text/csv", "Accept": accept})


@pytest.mark.parametrize("style", ["snake", "public"])
def test_csv_answer_is_identical_to_the_json_batch(client, style):
    rows = students(300)
    batch = client.post("/predictdata", json={"instances": rows})
    answer = post_csv(client, to_csv(rows, style))
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert answer.get_json() == batch.get_json()


def test_student_id_is_passed_through_in_order(client):
    rows = students(5)
    ids = ["7A-01", "7A-02", "x 3", "", "7A-05"]
    body = post_csv(client, to_csv(rows, ids=ids)).get_json()
    assert [p["student_id"] for p in body["predictions"]] == ids
    batch = client.post("/predictdata", json={"instances": rows}).get_json()
    assert [{k: v for k, v in p.items() if k != "student_id"} for p in body["predictions"]] == batch["predictions"]


def test_bad_rows_keep_their_place_with_every_field_error_and_never_fail_the_file(client, student):
    header = "student_id," + ",".join(FEATURE_NAMES)
    good = ",".join(str(student[n]) for n in FEATURE_NAMES)
    text = (
        "\n".join(
            [
                header,
                "s1," + good,
                "s2,female,group X,high school,standard,none,7,5,",  # one cell too many ("7,5" typed with a comma)
                "s3,female,group X,high school,standard,none,70,140",  # two bad fields
                "s4,female,group B,high school,standard,none,,70",  # missing score
                "s5," + good,
            ]
        )
        + "\n"
    )
    response = post_csv(client, text)
    assert response.status_code == 200
    predictions = response.get_json()["predictions"]
    assert [p["student_id"] for p in predictions] == ["s1", "s2", "s3", "s4", "s5"]
    assert "math_score" in predictions[0] and "math_score" in predictions[4]
    assert predictions[1]["row"] == 3 and predictions[1]["error"] == "row 3 (student s2): has 9 cells; the header has 8"
    assert predictions[2]["error"] == (
        "row 4 (student s3): Race/ethnicity group: must be one of: group A, group B, "
        "group C, group D, group E; Writing score (0-100): must be a number between 0 "
        "and 100"
    )
    assert predictions[2]["details"] == [
        {"field": "race_ethnicity", "message": "must be one of: group A, group B, group C, group D, group E"},
        {"field": "writing_score", "message": "must be a number between 0 and 100"},
    ]
    assert predictions[3]["error"] == "row 5 (student s4): Reading score (0-100): is required"


def test_csv_answer_for_accept_text_csv_matches_the_json(client, student):
    rows = students(20)
    text = to_csv(rows, "public", ids=[f"id{i}" for i in range(20)])
    text += "id20,female,group B,high school,standard,none,70,abc\n"
    response = post_csv(client, text, accept="text/csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    table = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    expected = client.post("/predictdata", json={"instances": rows}).get_json()["predictions"]
    assert [r["row"] for r in table] == [str(i) for i in range(2, 23)]  # the spreadsheet's rows: header is row 1
    assert [r["student_id"] for r in table] == [f"id{i}" for i in range(21)]
    titles = {"needs_support": "Needs support", "uncertain": "Could be either side", "on_track": "On track"}
    for row, want in zip(table, expected, strict=False):
        assert float(row["predicted_math_score"]) == want["math_score"] and row["band"] == want["band"]["name"]
        assert row["band_words"] == titles[want["band"]["name"]]
        assert float(row["below_cut_probability"]) == want["below_cut_probability"]
        assert row["band_without_background"] == want["band_without_background"]
        assert (float(row["interval_low"]), float(row["interval_high"])) == (
            want["interval"]["low"],
            want["interval"]["high"],
        )
        assert " the prediction " in row["top_factor"] and "(average " in row["top_factor"] and row["error"] == ""
        assert row["top_factor"].split(" ")[0] in ("Reading", "Writing")  # the evidence: never the course nor background
    assert table[20]["error"] == "row 22 (student id20): Writing score (0-100): must be a number between 0 and 100"
    assert table[20]["predicted_math_score"] == "" and "math_score" not in table[20]


def test_formulas_in_passed_through_text_are_defused(client, student):
    good = ",".join(str(student[n]) for n in FEATURE_NAMES)
    text = "student_id," + ",".join(FEATURE_NAMES) + f'\n=HYPERLINK("x"),{good}\n-5,{good}\n'
    table = list(csv.DictReader(io.StringIO(post_csv(client, text, "text/csv").get_data(as_text=True))))
    assert table[0]["student_id"] == '\'=HYPERLINK("x")' and table[1]["student_id"] == "-5"


@pytest.mark.parametrize(
    ("body", "status", "error", "text"),
    [
        (b"", 422, "validation_failed", "empty"),
        (b"gender,race_ethnicity\n", 422, "validation_failed", "parental_level_of_education: is missing"),
        ((",".join(FEATURE_NAMES) + ",lunch\n").encode(), 422, "validation_failed", "lunch: is given twice"),
        (b"\xff\xfe\x00gender", 400, "malformed_csv", "neither a spreadsheet (.xlsx) nor text"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1", 400, "malformed_csv", "old Excel workbook (.xls)"),
        (b"PK\x03\x04broken", 400, "malformed_csv", "looks like an Excel workbook (.xlsx) but cannot be read"),
        ((",".join(FEATURE_NAMES) + "\n").encode(), 422, "validation_failed", "no student rows"),
    ],
)
def test_a_file_that_is_not_a_class_list_is_refused_saying_why(client, body, status, error, text):
    response = client.post("/predictdata", data=body, headers={"Content-Type": "text/csv"})
    assert response.status_code == status and response.get_json()["error"] == error
    assert text in response.get_json()["message"]


def test_more_rows_than_max_batch_is_413(trained, tmp_path):
    from app import create_app

    client = create_app(AppConfig(artifacts_dir=Path(trained.store), max_batch=5, drift_dir=tmp_path)).test_client()
    response = post_csv(client, to_csv(students(6)))
    assert response.status_code == 413 and response.get_json()["message"] == "at most 5 students per file, got 6"


def test_a_byte_order_mark_and_windows_line_ends_are_read(client):
    rows = students(3)
    text = "\ufeff" + to_csv(rows).replace("\n", "\r\n")
    body = post_csv(client, text).get_json()
    assert body == client.post("/predictdata", json={"instances": rows}).get_json()


def test_ten_thousand_rows_in_one_file(client):
    response = post_csv(client, to_csv(students(10_000)))
    assert response.status_code == 200 and len(response.get_json()["predictions"]) == 10_000


def upload(client, text):
    return client.post(
        "/predictdata",
        data={"class_list": (io.BytesIO(text.encode()), "class.csv"), "upload": "class_list"},
        content_type="multipart/form-data",
    )


def test_the_form_page_takes_a_class_list_and_shows_counts_table_and_download(client, student):
    import base64
    from datetime import date

    rows = students(12)
    text = to_csv(rows, ids=[f"s{i}" for i in range(12)]) + "s12,female,group Z,high school,standard,none,70,70\n"
    before = date.today()
    response = upload(client, text)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    counts = {
        name: int(html.split(f'id="count-{name}">')[1].split("<")[0])
        for name in ("needs_support", "uncertain", "on_track", "failed")
    }
    assert sum(counts.values()) == 13 and counts["failed"] == 1
    assert "1 row could not be predicted" in html and "s12" in html and "must be one of" in html
    assert html.count("<tr ") == 13
    assert any(f'download="class-predictions-{day.isoformat()}.csv"' in html for day in (before, date.today()))
    data = base64.b64decode(html.split('href="data:text/csv;charset=utf-8;base64,')[1].split('"')[0])
    assert data.startswith("\ufeff".encode()) and data[3:].decode().startswith("row,student_id,gender,")
    assert '<script src="/static/class-list.js" defer></script>' in html and 'id="class-controls"' in html
    assert html.count("<h1") == 1 and 'Class results: <span id="title-count">13 students</span>' in html


def test_the_class_table_is_ordered_for_a_staff_meeting_and_counts_background_decided_bands(client):
    rows = students(120, seed=3)
    ids = [f"id{i:03d}" for i in range(120)]
    answers = client.post("/predictdata", json={"instances": rows}).get_json()["predictions"]
    html = upload(client, to_csv(rows, ids=ids)).get_data(as_text=True)
    shown = re.findall(
        r'<tr data-row="(\d+)" data-id="([^"]*)" data-band="(\w+)" data-chance="([0-9.]*)" data-score="([0-9.]*)"', html
    )
    assert len(shown) == 120
    rank = {"needs_support": 0, "uncertain": 1, "on_track": 2}
    expected = sorted(range(120), key=lambda i: (rank[answers[i]["band"]["name"]], answers[i]["math_score"], i))
    assert [ident for _, ident, _, _, _ in shown] == [ids[i] for i in expected]
    for band in rank:  # within each band, weakest first
        scores = [float(score) for _, _, b, _, score in shown if b == band]
        assert scores == sorted(scores) and len(scores) > 2, band
    flipped = sum(a["band_without_background"] != a["band"]["name"] for a in answers)
    assert int(html.split('id="count-background">')[1].split("<")[0]) == flipped
    assert html.count('class="flip-note"') == flipped


def test_a_real_math_score_column_is_kept_under_its_own_name_beside_the_prediction(client):
    rows = students(3)
    text = to_csv(rows).splitlines()
    text = "\n".join([text[0] + ",math_score"] + [line + f",{60 + i}" for i, line in enumerate(text[1:])]) + "\n"
    table = list(csv.DictReader(io.StringIO(post_csv(client, text, "text/csv").get_data(as_text=True))))
    assert [r["real_math_score"] for r in table] == ["60", "61", "62"]
    expected = client.post("/predictdata", json={"instances": rows}).get_json()["predictions"]
    assert [float(r["predicted_math_score"]) for r in table] == [e["math_score"] for e in expected]
    assert "math_score" not in table[0]


def test_the_form_page_says_why_a_file_is_refused(client):
    response = client.post(
        "/predictdata",
        data={"class_list": (io.BytesIO(b"a,b\n1,2\n"), "class.csv"), "upload": "class_list"},
        content_type="multipart/form-data",
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and 'id="class-error" role="alert"' in html
    assert "lunch: is missing: the file needs a column headed lunch (Lunch)" in html and 'aria-invalid="true"' in html
    nothing = client.post("/predictdata", data={"upload": "class_list"}, content_type="multipart/form-data")
    assert nothing.status_code == 422 and "choose the class&#39;s file (CSV or Excel .xlsx)" in nothing.get_data(
        as_text=True
    )


@pytest.mark.parametrize("cell", ["7_5", "\uff17\uff12", "nan", "0x10"])
def test_a_score_cell_that_is_not_plainly_a_number_is_a_row_error_not_a_guess(client, student, cell):
    header = ",".join(FEATURE_NAMES)
    row = ",".join(cell if n == "reading_score" else str(student[n]) for n in FEATURE_NAMES)
    predictions = post_csv(client, f"{header}\n{row}\n").get_json()["predictions"]
    assert predictions[0]["error"] == "row 2: Reading score (0-100): must be a number between 0 and 100"


def test_a_class_list_of_blank_lines_is_refused_before_it_is_read(client):
    header = ",".join(FEATURE_NAMES)
    response = client.post("/predictdata", data=header + "\n" * 1_000_000, content_type="text/csv")
    assert response.status_code == 413 and "more lines than" in response.get_json()["message"]


def test_an_uploaded_file_that_is_not_csv_text_is_a_422_form_page(client):
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    response = client.post(
        "/predictdata", data={"class_list": (io.BytesIO(png), "class.png")}, content_type="multipart/form-data"
    )
    assert response.status_code == 422 and "neither a spreadsheet (.xlsx) nor text" in response.get_data(as_text=True)


def spreadsheet_text(rows, ids, delimiter, header_case=str):
    header = [header_case(PUBLIC.get(n, n)) for n in ["student_id", *FEATURE_NAMES]]
    lines = [delimiter.join(header)]
    for ident, row in zip(ids, rows, strict=True):
        lines.append(delimiter.join([ident] + [str(row[n]) for n in FEATURE_NAMES]))
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_a_semicolon_or_tab_separated_list_with_any_case_gets_the_same_answers_as_the_exact_one(client, delimiter):
    rows = [
        {**r, "reading_score": round(r["reading_score"]), "writing_score": round(r["writing_score"])}
        for r in students(40, seed=8)
    ]
    ids = [f"7B-{i:02d}" for i in range(40)]
    exact = post_csv(client, to_csv(rows, ids=ids), accept="text/csv").get_data(as_text=True)
    loose = [
        {
            **r,
            "gender": r["gender"].title(),
            "race_ethnicity": f" {r['race_ethnicity'].lower()} ",
            "lunch": r["lunch"].upper(),
        }
        for r in rows
    ]
    text = spreadsheet_text(loose, ids, delimiter, header_case=str.title)
    answer = post_csv(client, "\ufeff" + text, accept="text/csv", query="?dialect=comma")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_data(as_text=True) == exact  # same answers, categories in the schema's spelling
    own = post_csv(client, text, accept="text/csv").get_data(as_text=True)  # by default, in the file's own dialect
    decimal = "," if delimiter == ";" else "."
    assert list(csv.reader(io.StringIO(own), delimiter=delimiter)) == [
        [cell.replace(".", decimal) if re.fullmatch(r"[0-9.]+", cell) else cell for cell in row]
        for row in csv.reader(io.StringIO(exact))
    ]
    body = post_csv(client, text).get_json()
    assert body == post_csv(client, to_csv(rows, ids=ids)).get_json()


def test_the_separator_is_read_from_the_header_line_outside_quotes():
    from src.web.roster import sniff_delimiter

    assert sniff_delimiter("a;b;c\n1,5;2;3\n") == ";"
    assert sniff_delimiter("\n\na\tb\tc\n") == "\t"
    assert sniff_delimiter('"a;b",c,d\n') == ","
    assert sniff_delimiter("gender\n") == ","


def test_the_json_api_still_takes_categories_exactly(client, student):
    response = client.post("/predictdata", json={**student, "gender": "Female"})
    assert response.status_code == 422 and response.get_json()["details"][0]["field"] == "gender"


def test_row_numbers_are_the_spreadsheets_counting_blank_rows_and_name_the_student(client, student):
    good = ",".join(str(student[n]) for n in FEATURE_NAMES)
    text = "student_id," + ",".join(FEATURE_NAMES) + f"\na1,{good}\n\nb2,{good.replace('group B', 'group Q')}\n"
    predictions = post_csv(client, text).get_json()["predictions"]
    assert predictions[1]["row"] == 4
    assert predictions[1]["error"].startswith("row 4 (student b2): Race/ethnicity group: must be one of")
    assert predictions[1]["details"][0]["field"] == "race_ethnicity"  # the API's details keep the field's name


def test_the_page_offers_a_template_that_is_accepted_as_it_is(client):
    html = client.get("/predictdata").get_data(as_text=True)
    assert 'href="/predictdata/class-list-template.csv"' in html
    template = client.get("/predictdata/class-list-template.csv")
    assert template.status_code == 200 and template.mimetype == "text/csv"
    assert "attachment" in template.headers["Content-Disposition"]
    text = template.get_data(as_text=True)
    assert text.startswith("\ufeffstudent_id," + ",".join(FEATURE_NAMES))
    body = post_csv(client, text.lstrip("\ufeff")).get_json()
    assert len(body["predictions"]) >= 1 and all("band" in p for p in body["predictions"])

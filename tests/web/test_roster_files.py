"""Class lists as schools have them: Excel workbooks, Windows-1252 text with decimal commas, wide exports."""

from __future__ import annotations

import base64
import csv
import io
import re

import pytest
from openpyxl import Workbook

from src.schema import FEATURE_NAMES
from src.web.roster import looks_personal

STUDENTS = [
    {
        "gender": "female",
        "race_ethnicity": "group B",
        "parental_level_of_education": "high school",
        "lunch": "standard",
        "test_preparation_course": "none",
        "reading_score": 72.5,
        "writing_score": 74,
    },
    {
        "gender": "male",
        "race_ethnicity": "group D",
        "parental_level_of_education": "master's degree",
        "lunch": "free/reduced",
        "test_preparation_course": "completed",
        "reading_score": 51,
        "writing_score": 48.5,
    },
]


def post_file(client, data, accept="application/json", query=""):
    return client.post("/predictdata" + query, data=data, headers={"Content-Type": "text/csv", "Accept": accept})


def upload(client, data, name):
    return client.post(
        "/predictdata",
        data={"class_list": (io.BytesIO(data), name), "upload": "class_list"},
        content_type="multipart/form-data",
    )


def json_batch(client, rows=STUDENTS):
    return client.post("/predictdata", json={"instances": rows}).get_json()


def workbook_bytes(header, rows):
    book = Workbook()
    sheet = book.active
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    book.create_sheet("Notes").append(["not a class list"])  # only the first sheet is read
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_an_excel_workbook_is_read_from_its_first_sheet_with_the_same_rules(client):
    header = ["student_id", *FEATURE_NAMES]
    rows = [[f"7B-0{i}", *(s[n] for n in FEATURE_NAMES)] for i, s in enumerate(STUDENTS, start=1)]
    rows.append(["7B-03", "female", "group X", "high school", "standard", "none", 101, 70])  # a bad row stays in place
    data = workbook_bytes(header, rows)
    body = post_file(client, data).get_json()
    expected = json_batch(client)["predictions"]
    assert [p["student_id"] for p in body["predictions"]] == ["7B-01", "7B-02", "7B-03"]
    assert [{k: v for k, v in p.items() if k != "student_id"} for p in body["predictions"][:2]] == expected
    assert body["predictions"][2]["row"] == 4 and "Race/ethnicity group: must be one of" in body["predictions"][2]["error"]
    page = upload(client, data, "class.xlsx")
    assert page.status_code == 200 and 'Class results: <span id="title-count">3 students</span>' in page.get_data(
        as_text=True
    )


def windows_semicolon_file():
    lines = [
        "student_id;Gender;Race/Ethnicity;Parental level of education;Lunch;Test preparation course;"
        "Reading score;Writing score"
    ]
    for ident, s in zip(["Zoë–1", "Zoë–2"], STUDENTS, strict=True):
        scores = [f"{s['reading_score']:g}".replace(".", ","), f"{s['writing_score']:g}".replace(".", ",")]
        lines.append(";".join([ident, *(s[n] for n in FEATURE_NAMES[:5]), *scores]))
    return ("\r\n".join(lines) + "\r\n").encode("cp1252")


def test_a_windows_1252_semicolon_file_with_decimal_commas_is_read(client):
    data = windows_semicolon_file()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert b"72,5" in data
    body = post_file(client, data).get_json()
    assert [p["student_id"] for p in body["predictions"]] == ["Zoë–1", "Zoë–2"]
    assert [{k: v for k, v in p.items() if k != "student_id"} for p in body["predictions"]] == json_batch(client)[
        "predictions"
    ]


def test_the_download_of_a_semicolon_upload_uses_semicolons_and_decimal_commas(client):
    data = windows_semicolon_file()
    text = post_file(client, data, accept="text/csv").get_data(as_text=True)
    table = list(csv.DictReader(io.StringIO(text), delimiter=";"))
    assert text.splitlines()[0].startswith("row;student_id;gender;")
    assert table[0]["reading_score"] == "72,5" and table[1]["writing_score"] == "48,5"
    assert re.fullmatch(r"\d+,\d", table[0]["predicted_math_score"])
    assert re.fullmatch(r"\d+,\d", table[0]["interval_low"]) and re.fullmatch(r"0,\d{3}", table[0]["below_cut_probability"])
    # the page's download is the same file; the other dialect is offered beside it
    html = upload(client, data, "class.csv").get_data(as_text=True)
    links = dict(re.findall(r'id="(download(?:-other)?)" href="data:text/csv;charset=utf-8;base64,([^"]+)"', html))
    page_text = base64.b64decode(links["download"]).decode("utf-8-sig")
    assert page_text == text and "semicolons, decimal commas, as your file" in html
    other = base64.b64decode(links["download-other"]).decode("utf-8-sig")
    other_table = list(csv.DictReader(io.StringIO(other)))
    assert other_table[0]["reading_score"] == "72.5" and other_table[0]["predicted_math_score"] == table[0][
        "predicted_math_score"
    ].replace(",", ".")


def test_the_download_dialect_can_be_chosen_and_a_wrong_choice_is_named(client):
    data = windows_semicolon_file()
    text = post_file(client, data, accept="text/csv", query="?dialect=comma").get_data(as_text=True)
    table = list(csv.DictReader(io.StringIO(text)))
    assert table[0]["reading_score"] == "72.5" and "," not in table[0]["predicted_math_score"]
    wrong = post_file(client, data, accept="text/csv", query="?dialect=pipes")
    assert wrong.status_code == 422 and wrong.get_json()["details"] == [
        {"field": "dialect", "message": "must be one of: comma, semicolon, tab"}
    ]


def test_a_comma_file_still_refuses_a_quoted_decimal_comma(client):
    text = ",".join(FEATURE_NAMES) + '\nfemale,group B,high school,standard,none,"72,5",70\n'
    body = post_file(client, text.encode()).get_json()
    assert "with a point, not a comma: 72.5" in body["predictions"][0]["error"]


PRIVATE = {
    "First name": "Amélie",
    "Surname": "Dupont-Verhaegen",
    "Pupil e-mail": "amelie.d@school.example",
    "Home address": "12 Rue des Lilas",
}


def wide_export():
    """A school export: 40 columns, the class list's among names, contact details and 32 other columns."""
    others = ["Tutor group", "School name", "Attendance %"] + [f"extra_col_{i}" for i in range(1, 30)]
    header = [*PRIVATE, "student_id", *FEATURE_NAMES[:4], "Tutor group notes", *FEATURE_NAMES[4:], *others][:40]
    lines = [",".join(header)]
    for i, s in enumerate(STUDENTS, start=1):
        values = {
            **PRIVATE,
            "student_id": f"S{i}",
            **{n: f"{s[n]:g}" if isinstance(s[n], float) else str(s[n]) for n in FEATURE_NAMES},
        }
        lines.append(",".join(values.get(h, f"x{j}") for j, h in enumerate(header)))
    return header, ("\n".join(lines) + "\n").encode()


def test_a_forty_column_export_is_answered_with_one_warning_and_names_never_echoed(client):
    header, data = wide_export()
    assert len(header) == 40
    response = post_file(client, data)
    assert response.status_code == 200
    body = response.get_json()
    assert [{k: v for k, v in p.items() if k != "student_id"} for p in body["predictions"]] == json_batch(client)[
        "predictions"
    ]
    privacy, unused = body["warnings"]
    for name in PRIVATE:
        assert f"“{name}”" in privacy and f"“{name}”" not in unused
    assert "look like names or contact details" in privacy
    assert unused.startswith("28 columns were not used") and "“extra_col_1”" in unused and "“School name”" in unused
    answers = [
        response.get_data(as_text=True),
        post_file(client, data, accept="text/csv").get_data(as_text=True),
        upload(client, data, "export.csv").get_data(as_text=True),
    ]
    for text in answers:
        for value in PRIVATE.values():
            assert value not in text and value.replace("é", "&#233;") not in text
    assert "look like names or contact details" in answers[2] and 'id="file-warnings"' in answers[2]


@pytest.mark.parametrize(
    ("header", "personal"),
    [
        ("first_name", True),
        ("Surname", True),
        ("Full Name", True),
        ("E-mail", True),
        ("Home address", True),
        ("Date of birth", True),
        ("School name", False),
        ("Class name", False),
        ("reading_score", False),
        ("Attendance", False),
    ],
)
def test_columns_that_look_like_names_or_contact_details(header, personal):
    assert looks_personal(header) is personal

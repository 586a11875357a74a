"""The class list's CSV text, written column by column, is the text Python's csv writer writes (a lone CR quoted
as well), and every cell echoing an upload is safe for every reader of the file."""

import csv
import io
import json
import random

import pytest

from src.web.roster import csv_columns_text

SPECIAL = [
    "",
    "plain",
    "a,b",
    'say "hi"',
    "two\nlines",
    "carriage\rreturn",
    "crlf\r\n",
    " spaced ",
    "=1+2",
    "café",
    "tab\there",
    '"',
    ",",
    None,
    7,
    64.5,
    -0.0,
    True,
]


def _writer_text(header, rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


@pytest.mark.parametrize("seed", range(25))
def test_the_column_writer_agrees_with_the_csv_writer(seed):
    generator = random.Random(seed)
    width, height = generator.randint(2, 9), generator.randint(0, 40)
    plain_columns = generator.sample(range(width), generator.randint(0, width))
    columns = []
    for j in range(width):
        pool = ["x", "group B", "72", "On track"] if j in plain_columns else SPECIAL
        columns.append([generator.choice(pool) for _ in range(height)])
    header = [generator.choice(["row", "a,b", 'q"', "math score"]) for _ in range(width)]
    rows = list(zip(*columns, strict=True)) if height else []
    text = csv_columns_text(header, columns)
    as_text = [["" if c is None else str(c) for c in row] for row in [header, *rows]]
    assert list(csv.reader(io.StringIO(text, newline=""))) == as_text
    if not any("\r" in cell for row in as_text for cell in row if "\n" not in cell):
        assert text == _writer_text(header, rows)  # the writer's own text where it quotes the same cells


def test_a_header_alone_when_there_are_no_rows():
    assert csv_columns_text(["row", "gender"], [[], []]) == "row,gender\n"


HOSTILE = [
    "S2\r=cmd|' /C calc'!A0",
    "a;=1+1;",
    "x,=1+1",
    "tab\t@SUM(A1)",
    'two\n+HYPERLINK("x")',
    "crlf\r\n-2+3",
    '"=1"',
    '=HYPERLINK("http://x")',
    "  =1+1",
    "-5+A1",
    "ok;-cmd",
]
SEPARATORS = [",", ";", "\t"]


def _cells_as_readers_see_them(text: str, separator: str) -> dict[str, list[str]]:
    """The cells of ``text`` for Python's csv, for a reader that ends a line at any CR or LF and splits on the
    separator, and for readers that split every line on ';' (or ',', or tab) whatever the file's separator."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return {
        "python csv": [c for row in csv.reader(io.StringIO(text, newline=""), delimiter=separator) for c in row],
        "lone-CR lines": [c for line in lines for c in line.split(separator)],
        "';' split": [c for line in lines for c in line.split(";")],
        "',' split": [c for line in lines for c in line.split(",")],
        "tab split": [c for line in lines for c in line.split("\t")],
    }


def _formula(cell: str) -> bool:
    """A cell a spreadsheet would run: its text (surrounding quotes and spaces aside) starts with = + - @."""
    text = cell.strip(" ").lstrip('"').lstrip(" ")
    return bool(text) and text[0] in "=+-@" and not _plain_number(text)


def _plain_number(text: str) -> bool:
    try:
        float(text.rstrip('"').replace(",", "."))
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("separator", SEPARATORS)
def test_echoed_cells_never_start_a_formula_for_any_reader(client, separator, student):
    from src.schema import FEATURE_NAMES

    name = {",": "comma", ";": "semicolon", "\t": "tab"}[separator]
    good = [str(student[n]) for n in FEATURE_NAMES]
    rows = [["student_id", *FEATURE_NAMES]]
    for i, hostile in enumerate(HOSTILE):
        rows.append([hostile, *good])  # a valid student with a hostile id
        bad = list(good)
        bad[i % len(bad)] = hostile  # a refused row echoing a hostile cell
        rows.append([f"id{i}", *bad])
    out = io.StringIO()
    csv.writer(out, delimiter=separator).writerows(rows)
    response = client.post(
        f"/predictdata?dialect={name}",
        data=out.getvalue().encode(),
        headers={"Content-Type": "text/csv", "Accept": "text/csv"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    text = response.get_data(as_text=True)
    assert "cmd|" in text and "HYPERLINK" in text  # the hostile text is echoed, defused
    for reader, cells in _cells_as_readers_see_them(text, separator).items():
        formulas = [c for c in cells if _formula(c)]
        assert not formulas, (reader, formulas)


@pytest.mark.parametrize("separator", SEPARATORS)
def test_defused_text_reads_back_whole_with_pythons_csv(separator):
    from src.web.spreadsheet import csv_cell, defuse

    line = separator.join(csv_cell(text, separator) for text in HOSTILE) + "\n"
    assert next(csv.reader(io.StringIO(line, newline=""), delimiter=separator)) == [defuse(t) for t in HOSTILE]
    assert all(defuse(t).replace("'", "") == t.replace("'", "") for t in HOSTILE)  # only quotes were added


def test_plain_numbers_are_echoed_as_numbers():
    from src.web.spreadsheet import defuse

    assert [defuse(t) for t in ["-5", "+3", "-72,5", "-1.5e3", "x; -3"]] == ["-5", "+3", "-72,5", "-1.5e3", "x; -3"]


def test_a_real_score_of_minus_zero_is_echoed_as_zero(client, student):
    from src.answers.evaluation import REAL_SCORE
    from src.schema import FEATURE_NAMES, TARGET

    text = ",".join([*FEATURE_NAMES, TARGET.name]) + "\n" + ",".join([*(str(student[n]) for n in FEATURE_NAMES), "-0"])
    as_csv = client.post("/predictdata", data=text.encode(), headers={"Content-Type": "text/csv", "Accept": "text/csv"})
    row = next(csv.DictReader(io.StringIO(as_csv.get_data(as_text=True))))
    as_json = client.post("/predictdata", data=text.encode(), headers={"Content-Type": "text/csv"}).get_json()
    assert row[REAL_SCORE] == "0"
    assert "-0" not in json.dumps(as_json["predictions"][0].get(REAL_SCORE)), as_json["predictions"][0]

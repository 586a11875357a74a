"""The class list's CSV text, written column by column, is the text Python's csv writer writes."""

import csv
import io
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
    assert csv_columns_text(header, columns) == _writer_text(header, rows)


def test_a_header_alone_when_there_are_no_rows():
    assert csv_columns_text(["row", "gender"], [[], []]) == "row,gender\n"

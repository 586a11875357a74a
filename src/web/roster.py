"""Class lists as spreadsheets save them: parse, predict, answer as CSV or JSON.

A class list comes as a spreadsheet saves it: an Excel workbook (``.xlsx``, its first sheet) or text, UTF-8 or
Windows-1252 (what Excel saves as "CSV" on a Western European Windows), comma-, semicolon- or tab-separated (the
separator is read from the header line). A semicolon or tab file may write decimals with a comma ("72,5"), as
such spreadsheets do; the answer as CSV is written in the file's own dialect (separator and decimal mark) unless
another is asked for. Headers of either style in any case, an optional ``student_id`` and an optional math score
column (each student's real score, compared with the answer). Other columns are left unread, named in one warning;
columns that look like names or contact details are named in a privacy warning, their cells never read back.
Categories match ignoring case and surrounding spaces and are answered in the schema's spelling.

A bad row never fails the file: it keeps its place, with its row number and every field error. Only a
problem with the file as a whole (neither a workbook nor text, no header, a required column missing, a column
given twice, more rows than MAX_BATCH) refuses it. Row numbers are the spreadsheet's: the header is row 1 and
blank rows count, so that "row 5" is row 5 where the teacher looks for it; an error names the student id and the
field's label as the page shows it.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import functools
import io
import re
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from src.answers.arrays import repeated, round_as_python
from src.answers.bands import BAND_NAMES, NEEDS_SUPPORT, ON_TRACK, UNCERTAIN, Bands
from src.answers.columns import (
    BELOW_CUT,
    PROBABILITY_DECIMALS,
    WITHOUT_BACKGROUND,
    Answers,
    compute_answers,
)
from src.answers.evaluation import OUTCOME_COLUMNS
from src.answers.model import PredictPipeline
from src.schema import (
    CATEGORICAL_FEATURES,
    FEATURE_NAMES,
    FEATURES,
    FEATURES_BY_NAME,
    STUDENT_ID,
    TARGET,
    CategoricalFeature,
    canonical_name,
)
from src.validation import (
    MAX_DETAILS,
    FieldError,
    StudentColumns,
    check_text_columns,
    short_field,
    take_real_score,
    validate_student,
)
from src.web.answers import Evaluated, batch_answer, evaluate_batch
from src.web.spreadsheet import defuse_column, needs_quotes
from src.web.wording import BAND_TITLES

CSV_TYPE = "text/csv"
MAX_ID_LENGTH = 64
MAX_CELLS_PER_ROW = 64  # cells a row may have on average before the file is refused unread
MAX_LINES_PER_ROW = 4  # lines per student (blank lines, quoted line breaks) before the file is refused unread
PREDICTED = "predicted_math_score"  # never "math_score": a class list's math score column is the real score
BAND_WORDS = "band_words"
OUTPUT_COLUMNS = (
    PREDICTED,
    "interval_low",
    "interval_high",
    BELOW_CUT,
    "band",
    BAND_WORDS,
    WITHOUT_BACKGROUND,
    "top_factor",
    "error",
)
# Every score and range bound as the CSV answer writes it (one decimal, 0-100): k/10 for k = 0 .. 1000.
_ONE_DECIMAL = np.array([f"{k / 10:.1f}" for k in range(int(TARGET.maximum) * 10 + 1)], dtype=object)
_ONE_DECIMAL_COMMA = np.array([text.replace(".", ",") for text in _ONE_DECIMAL], dtype=object)
# A math score column (the public download's) is each student's real score: checked, and compared with the answer.
_ACCEPTED = frozenset(FEATURE_NAMES) | {STUDENT_ID, TARGET.name}
_CATEGORY_NAMES = frozenset(f.name for f in CATEGORICAL_FEATURES)


class RosterError(ValueError):
    """The file as a whole cannot be read as a class list; ``status``/``code`` say how to answer."""

    def __init__(self, status: int, code: str, message: str, details: Sequence[FieldError] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details)


@dataclass(frozen=True)
class RosterRow:
    """A row that cannot be answered, with every rule it broke."""

    number: int  # the spreadsheet's row (the header is row 1)
    values: Mapping[str, str]  # the uploaded cells, schema names
    student_id: str | None
    errors: Sequence[FieldError] = ()

    @property
    def error(self) -> str:
        """Every field error of the row, in one line, for a person:
        'row 5 (student 7B-04): Writing score (0-100): must be ...; Gender: is required'."""
        if not self.errors:
            return ""
        who = f"row {self.number}" + (f" (student {self.student_id})" if self.student_id else "")
        return f"{who}: " + "; ".join(
            e.message if e.field == "row" else f"{field_label(e.field)}: {e.message}" for e in self.errors
        )


@dataclass(frozen=True)
class Roster:
    """A class list as columns: each row's cells, the rows answered (as checked columns) and the rows refused."""

    size: int
    cells: Mapping[str, list[str]]  # per feature, each row's cell as uploaded ("" where a short row has none)
    ids: list[str | None] | None  # each row's student_id, when the file has the column
    valid: np.ndarray  # the rows answered
    students: StudentColumns  # those rows, checked, as columns
    failed: Mapping[int, RosterRow]  # the other rows, by position, in order
    reals: np.ndarray | None = None  # a labeled file's real math scores of the rows answered (NaN: blank)
    numbers: Sequence[int] = ()  # each row's spreadsheet row (the header is row 1, blank rows count)
    dialect: Dialect = field(default_factory=lambda: DEFAULT_DIALECT)  # the file's separator and decimal mark
    source: str = "utf-8"  # "xlsx", "utf-8" or "windows-1252"
    ignored: tuple[str, ...] = ()  # the columns left unread, as the file names them
    private: tuple[str, ...] = ()  # the columns left unread that look like names or contact details

    @property
    def warnings(self) -> list[str]:
        """What a teacher should know of how the file was read: the columns left unread (one warning listing them)
        and those that look like names or contact details (named, their cells never read)."""
        said = []
        if self.private:
            said.append(
                f"{_listed(self.private)} {'looks' if len(self.private) == 1 else 'look'} like "
                "names or contact details: not read, and not in the results. Please leave such columns out of the "
                "files you upload: the predictions need none of them."
            )
        if self.ignored:
            count = len(self.ignored)
            said.append(
                f"{count} {'column was' if count == 1 else 'columns were'} not used, as the predictions do not "
                f"need {'it' if count == 1 else 'them'}: {_listed(self.ignored)}."
            )
        return said

    @property
    def has_ids(self) -> bool:
        return self.ids is not None

    @property
    def labeled(self) -> bool:
        """The file has a real math score column."""
        return self.reals is not None


@dataclass
class RosterAnswer:
    """The class list answered: one entry per row, in upload order."""

    roster: Roster
    model_version: str
    items: list[dict[str, Any]] = field(default_factory=list)  # JSON items, in row order
    factors_reason: str | None = None
    chance_reason: str | None = None  # why the model gives no chance below the cut
    answers: Answers | None = None  # the valid rows' answers, as arrays
    evaluated: Evaluated | None = None  # the valid rows against their real scores (a labeled file only)

    @property
    def evaluation(self) -> dict[str, Any] | None:
        return self.evaluated.evaluation if self.evaluated is not None else None

    @functools.cached_property
    def top_factors(self) -> list[str]:
        """Per row, the score (reading or writing) that moves the prediction most, in words ("" for bad rows or no
        factors)."""
        if self.answers is None:
            return [""] * self.roster.size
        return _rows_of(self.roster.size, self.roster.valid, self.answers.top_factor)

    @property
    def failed(self) -> list[RosterRow]:
        return list(self.roster.failed.values())

    def band_counts(self) -> dict[str, int]:
        counts = Counter(self.answers.bands.tolist()) if self.answers is not None else Counter()  # type: ignore[union-attr]
        return {name: counts.get(name, 0) for name in BAND_NAMES}

    def background_decided(self) -> int:
        """How many students got another band than they would with background details at their average."""
        answers = self.answers
        if answers is None or answers.without_background is None:
            return 0
        return int((answers.without_background != answers.bands).sum())

    def staff_order(self) -> list[int]:
        """Row positions for a staff meeting: needs support, then could be either side, then on track, each by
        predicted score, weakest first; then the rows not predicted; ties in file order."""
        size = self.roster.size
        rank = np.full(size, 3)
        score = np.zeros(size)
        answers = self.answers
        if answers is not None:
            at = np.flatnonzero(self.roster.valid)
            codes = {NEEDS_SUPPORT: 0, UNCERTAIN: 1, ON_TRACK: 2}
            rank[at] = [codes[name] for name in answers.bands.tolist()]  # type: ignore[union-attr]
            score[at] = np.round(answers.predictions.scores, 1)
        return np.lexsort((np.arange(size), score, rank)).tolist()


def parse_roster(data: bytes, max_rows: int) -> Roster:
    """Read a class list; RosterError for a problem with the whole file, row errors kept with their rows."""
    source = read_class_file(data, max_rows)
    lines, counted, dialect = source.lines, source.counted, source.dialect
    if not lines:
        raise RosterError(
            422,
            "validation_failed",
            "the file is empty: it needs a header row and one row per student",
            [FieldError("file", "must have a header row and at least one student row")],
        )
    raw_header = lines[0][1]
    header = [canonical_name(h) for h in raw_header]
    ignored, private = _check_header(raw_header, header)
    numbers = [number for number, _ in lines[1:]]
    body = [cells for _, cells in lines[1:]]
    if not body:
        raise RosterError(
            422,
            "validation_failed",
            "the file has a header but no student rows",
            [FieldError("file", "must have at least one student row")],
        )
    if counted - 1 > max_rows:
        raise RosterError(413, "batch_too_large", f"at most {max_rows} students per file, got {counted - 1}")
    positions = [(name, i) for i, name in enumerate(header) if name in FEATURE_NAMES]
    id_at = header.index(STUDENT_ID) if STUDENT_ID in header else None
    real_at = header.index(TARGET.name) if TARGET.name in header else None
    width = len(header)
    size = len(body)
    whole = [len(cells) == width for cells in body]
    # Cells by column: a row of the header's width as it is; another padded with "" (it is refused below).
    rows = (
        body
        if all(whole)
        else [cells if ok else (cells + [""] * width)[:width] for cells, ok in zip(body, whole, strict=True)]
    )
    by_column = list(zip(*rows, strict=True))
    cells = {name: list(by_column[i]) for name, i in positions}
    real_cells = list(by_column[real_at]) if real_at is not None else None
    if dialect.separator != ",":  # "72,5" is a number where the comma does not separate cells
        commas = False
        for name in NUMERIC_NAMES:
            cells[name], seen = _decimal_points(cells[name])
            commas |= seen
        if real_cells is not None:
            real_cells, seen = _decimal_points(real_cells)
            commas |= seen
        if commas:
            dialect = Dialect(dialect.separator, ",")
    ids = list(by_column[id_at]) if id_at is not None else None
    if ids is not None and not all(whole):  # a short row's missing id is no id
        ids = [cell if ok or id_at < len(raw) else None for cell, ok, raw in zip(ids, whole, body, strict=True)]
    ok, checked = check_text_columns(cells, size)
    valid = ok & np.asarray(whole, dtype=bool)
    if ids is not None and (None in ids or max(map(len, ids), default=0) > MAX_ID_LENGTH):
        valid &= np.fromiter((len(i or "") <= MAX_ID_LENGTH for i in ids), dtype=bool, count=size)
    reals = real_errors = None
    if real_at is not None:  # each real score checked by the target's rule (blank allowed: not known yet)
        reals = np.full(size, np.nan)
        real_errors = {}
        for at, cell in enumerate(real_cells or ()):
            if not whole[at]:
                continue
            _, real, broken = take_real_score({TARGET.name: cell}, numbers[at], from_form=True)
            if broken:
                real_errors[at] = broken
                valid[at] = False
            elif real is not None:
                reals[at] = real
    failed: dict[int, RosterRow] = {}
    for at in np.flatnonzero(~valid).tolist():  # the rows with errors: the shared validator names each rule
        number = numbers[at]
        values = {name: cells[name][at] for name in FEATURE_NAMES}
        student_id = ids[at] if ids is not None else None
        if not whole[at]:
            errors = [FieldError("row", f"has {len(body[at])} cells; the header has {width}", number)]
        else:
            errors = validate_student(values, number, from_form=True)[1]
            errors += (real_errors or {}).get(at, [])
            if student_id is not None and len(student_id) > MAX_ID_LENGTH:
                errors.append(FieldError(STUDENT_ID, f"must be at most {MAX_ID_LENGTH} characters", number))
        failed[at] = RosterRow(number, values, student_id, tuple(errors))
    students = checked if (valid == ok).all() else checked.take(valid[ok])
    return Roster(
        size,
        cells,
        ids,
        valid,
        students,
        failed,
        None if reals is None else reals[valid],
        numbers,
        dialect=dialect,
        source=source.kind,
        ignored=ignored,
        private=private,
    )


DELIMITERS = (",", ";", "\t")


def sniff_delimiter(text: str) -> str:
    """The separator of the header line: the one of comma, semicolon and tab it holds most often outside quotes
    (a comma on a tie or when it holds none)."""
    header = next((line for line in io.StringIO(text) if line.strip()), "")
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    return max(DELIMITERS, key=lambda d: counts[d])


def field_label(field: str) -> str:
    """A field as the page shows it: the schema's label ("Reading score (0-100)"), "Student id" for the id."""
    feature = FEATURES_BY_NAME.get(field) or (TARGET if field == TARGET.name else None)
    if feature is not None:
        return feature.label
    return "Student id" if field == STUDENT_ID else field


def _check_header(raw: Sequence[str], header: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Refuse a header without every feature or with a column given twice; else the columns left unread (as the
    file names them), those that look like names or contact details apart."""
    errors: list[FieldError] = []
    seen: set[str] = set()
    for original, name in zip(raw, header, strict=True):
        if name in _ACCEPTED and name in seen:
            errors.append(FieldError(short_field(original.strip()), f"is given twice (as {short_field(name)!r} too)"))
        seen.add(name)
    errors += [
        FieldError(name, f"is missing: the file needs a column headed {name} ({field_label(name)})")
        for name in FEATURE_NAMES
        if name not in header
    ]
    if errors:
        shown = "; ".join(f"{e.field}: {e.message}" for e in errors[:MAX_DETAILS])
        more = f" (and {len(errors) - MAX_DETAILS} more)" if len(errors) > MAX_DETAILS else ""
        raise RosterError(422, "validation_failed", f"the header row is not a class list: {shown}{more}", errors)
    unread = [
        short_field(original.strip() or f"column {i + 1}")
        for i, (original, name) in enumerate(zip(raw, header, strict=True))
        if name not in _ACCEPTED and (original.strip() or i < len(raw) - 1)
    ]
    private = tuple(name for name in unread if looks_personal(name))
    return tuple(name for name in unread if name not in private), private


# Words of a header that names a person or how to reach them: such a column should never be uploaded.
_PERSONAL_WORDS = frozenset(
    "name names firstname lastname surname surnames forename forenames givenname familyname fullname middlename "
    "email mail address street postcode zip phone telephone mobile birthday dob".split()
)
_PERSONAL_PAIRS = (("first", "name"), ("last", "name"), ("given", "name"), ("family", "name"), ("date", "birth"))
_NOT_A_PERSON = frozenset("school class course subject group form".split())


def looks_personal(header: str) -> bool:
    """Whether a column's header looks like a person's name or contact details ("First name", "surname",
    "Pupil e-mail", "Home address"); a school's, class's or course's name is not a person's."""
    words = re.findall(r"[a-z]+", header.lower().replace("e-mail", "email"))
    if not words or _NOT_A_PERSON.intersection(words):
        return False
    if _PERSONAL_WORDS.intersection(words):
        return True
    return any(a in words and b in words for a, b in _PERSONAL_PAIRS)


NUMERIC_NAMES = tuple(f.name for f in FEATURES if not isinstance(f, CategoricalFeature))
_COMMA_NUMBER = re.compile(r"\s*[+-]?[0-9]+,[0-9]+\s*")


def _decimal_points(column: list[str]) -> tuple[list[str], bool]:
    """A number column of a semicolon or tab file with each decimal comma written as a point ("72,5" -> "72.5"),
    and whether there was one. Only a cell that is a number once its one comma is a point changes."""
    if not any("," in cell for cell in column):
        return column, False
    return [c.replace(",", ".") if "," in c and _COMMA_NUMBER.fullmatch(c) else c for c in column], True


@dataclass(frozen=True)
class Dialect:
    """How a CSV file writes its cells: the separator and the decimal mark."""

    separator: str
    decimal: str

    @property
    def name(self) -> str:
        return next((name for name, d in DIALECTS.items() if d == self), "comma")

    @property
    def words(self) -> str:
        """The dialect for a person: "semicolons, decimal commas"."""
        separator = {",": "commas", ";": "semicolons", "\t": "tabs"}[self.separator]
        return f"{separator}, decimal {'commas' if self.decimal == ',' else 'points'}"


# The dialects an answer can be asked in: what English-language spreadsheets write, what European ones write (a
# semicolon because the comma is the decimal mark), and tabs.
DIALECTS = {"comma": Dialect(",", "."), "semicolon": Dialect(";", ","), "tab": Dialect("\t", ".")}
DEFAULT_DIALECT = DIALECTS["comma"]


@dataclass(frozen=True)
class ClassFile:
    """A class list's non-blank rows as text cells, each with its spreadsheet row, and how the file was read."""

    lines: list[tuple[int, list[str]]]
    counted: int  # every non-blank row, the header too (rows beyond MAX_BATCH + 1 are counted, not kept)
    dialect: Dialect
    kind: str  # "xlsx", "utf-8" or "windows-1252"


MAX_XLSX_COLUMNS = 256  # columns of a sheet read; a school export has dozens
# Cells any one text row may have, a sheet's width: a longer row is refused as the reader meets it (each cell is a
# Python object, and a 262 KB header of commas would be 262,128 of them before any check of the header).
MAX_COLUMNS = MAX_XLSX_COLUMNS
MAX_XLSX_BYTES = 64 * 1024 * 1024  # a workbook's parts unpacked, at most (a zip bomb is refused unread)
_ZIP = b"PK\x03\x04"
_OLD_EXCEL = b"\xd0\xcf\x11\xe0"


def read_class_file(data: bytes, max_rows: int) -> ClassFile:
    """The rows of an uploaded class list, a workbook's first sheet or a text file's lines; RosterError when the
    file is neither, or too large for ``max_rows`` students."""
    if data.startswith(_ZIP):
        return ClassFile(*_xlsx_lines(data, max_rows), DEFAULT_DIALECT, "xlsx")
    if data.startswith(_OLD_EXCEL):
        raise RosterError(
            400, "malformed_csv", "the file is an old Excel workbook (.xls): save it as .xlsx or as CSV and upload that"
        )
    kind = "utf-8"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Not UTF-8: text from a Western European Windows (Excel's "CSV") is Windows-1252, of which Latin-1 is all
        # but five bytes; either reads every byte.
        kind = "windows-1252"
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    if "\x00" in text:
        raise RosterError(
            400, "malformed_csv", "the file is neither a spreadsheet (.xlsx) nor text saved as CSV: save it as one"
        )
    # Every cell and row becomes a Python object: a file of commas or of short rows would cost a worker far more
    # memory than its size. Cells are bounded before reading, rows while reading.
    if data.count(b"\n") > (max_rows + 1) * MAX_LINES_PER_ROW:
        raise RosterError(
            413,
            "batch_too_large",
            f"the file has more lines than {max_rows} students need "
            f"(at most {MAX_LINES_PER_ROW} per student, blank ones included)",
        )
    delimiter = sniff_delimiter(text)
    if data.count(delimiter.encode()) > (max_rows + 1) * MAX_CELLS_PER_ROW:
        raise RosterError(
            413,
            "batch_too_large",
            f"the file has more cells than {max_rows} students can fill (at most {MAX_CELLS_PER_ROW} per row)",
        )
    lines: list[tuple[int, list[str]]] = []  # each with its spreadsheet row (the header is row 1)
    counted = 0
    try:
        for number, cells in enumerate(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), start=1):
            if len(cells) > MAX_COLUMNS:
                raise RosterError(
                    413,
                    "too_many_columns",
                    f"row {number} has {len(cells)} cells; a class list has at most {MAX_COLUMNS} columns",
                )
            if cells and (cells[0].strip() or any(c.strip() for c in cells)):  # the first cell decides most rows
                counted += 1
                if counted <= max_rows + 1:  # beyond, rows are only counted, for the message
                    lines.append((number, cells))
    except csv.Error as err:
        raise RosterError(400, "malformed_csv", f"the file is not readable CSV: {err}") from err
    decimal = "," if delimiter == ";" else "."
    return ClassFile(lines, counted, Dialect(delimiter, decimal), kind)


def _xlsx_lines(data: bytes, max_rows: int) -> tuple[list[tuple[int, list[str]]], int]:
    """The non-blank rows of a workbook's first sheet as text cells (numbers as written, without a trailing .0)."""
    from openpyxl import load_workbook  # imported when a workbook comes: most class lists are CSV

    unreadable = "the file looks like an Excel workbook (.xlsx) but cannot be read"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as err:
        raise RosterError(400, "malformed_csv", f"{unreadable}: {err}") from err
    if unpacked > MAX_XLSX_BYTES:
        raise RosterError(413, "batch_too_large", f"the workbook unpacks to more than {MAX_XLSX_BYTES // 2**20} MB")
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError) as err:
        raise RosterError(400, "malformed_csv", f"{unreadable}: {err}") from err
    lines: list[tuple[int, list[str]]] = []
    counted = 0
    try:
        sheets = book.worksheets
        if not sheets:
            raise RosterError(400, "malformed_csv", f"{unreadable}: it has no sheet")
        for number, row in enumerate(sheets[0].iter_rows(values_only=True, max_col=MAX_XLSX_COLUMNS), start=1):
            cells = [_xlsx_text(value) for value in row]
            if any(c.strip() for c in cells):
                counted += 1
                if counted > max_rows + 1:
                    raise RosterError(413, "batch_too_large", f"at most {max_rows} students per file, got more")
                lines.append((number, cells))
    except (KeyError, ValueError, TypeError, zipfile.BadZipFile) as err:
        raise RosterError(400, "malformed_csv", f"{unreadable}: {err}") from err
    finally:
        book.close()
    if lines:  # a sheet's rows are as wide as its widest: cut each to the header's last filled cell
        header = lines[0][1]
        width = max((i + 1 for i, c in enumerate(header) if c.strip()), default=0)
        lines = [(n, (cells + [""] * width)[:width]) for n, cells in lines]
    return lines, counted


def _xlsx_text(value: Any) -> str:
    """A workbook cell as the text a CSV export would hold: 72 for 72.0, the shortest exact text of a decimal."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def answer_roster(pipeline: PredictPipeline, roster: Roster, bands: Bands, *, items_wanted: bool = True) -> RosterAnswer:
    """Predict every valid row as one batch; keep bad rows in place with their errors.

    ``items_wanted=False`` (an answer written as CSV, which reads the columns) leaves the JSON items out, unless
    real scores were given (the outcome columns are read from the items).
    """
    answer = RosterAnswer(roster, pipeline.model_version)
    if not pipeline.factors.available:
        answer.factors_reason = pipeline.factors.reason
    answer.chance_reason = pipeline.below_cut.reason
    items: list[dict[str, Any]] = []
    if roster.students.size and not items_wanted and roster.reals is None:
        answer.answers = compute_answers(pipeline, roster.students, bands)
        return answer
    if roster.students.size:
        batch = batch_answer(pipeline, roster.students, bands)
        answer.answers = batch.answers
        if roster.reals is not None:  # adds each valid row's outcome to its item
            answer.evaluated = evaluate_batch(pipeline, batch, roster.reals, bands)
        items = batch.items
    if roster.failed:
        predicted = iter(items)
        items = [_failed_item(roster.failed[at]) if at in roster.failed else next(predicted) for at in range(roster.size)]
    if roster.ids is not None:
        items = [{STUDENT_ID: sid, **item} for sid, item in zip(roster.ids, items, strict=True)]
    answer.items = items
    return answer


def _failed_item(row: RosterRow) -> dict[str, Any]:
    return {"row": row.number, "error": row.error, "details": [{"field": e.field, "message": e.message} for e in row.errors]}


def roster_json(answer: RosterAnswer) -> dict[str, Any]:
    """The JSON answer: as the JSON batch's, bad rows in place as ``{"row", "error", "details"}``."""
    payload: dict[str, Any] = {"predictions": answer.items, "model_version": answer.model_version}
    if answer.factors_reason is not None:
        payload["factors_reason"] = answer.factors_reason
    if answer.evaluation is not None:
        payload["evaluation"] = answer.evaluation
    if answer.roster.warnings:
        payload["warnings"] = answer.roster.warnings
    return payload


def _listed(names: Sequence[str], most: int = 60) -> str:
    shown = ", ".join(f"“{n}”" for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _rows_of(n: int, at: np.ndarray, values: Any) -> list[str]:
    """A text column of all ``n`` rows: ``values`` at the rows ``at`` (positions or a mask), empty text elsewhere."""
    column = repeated("", n)
    column[at] = values
    return column.tolist()


def roster_csv(answer: RosterAnswer, dialect: Dialect | None = None) -> str:
    """The CSV answer: the uploaded rows in order, with the predicted score, range, chance below the cut, band as a
    code and in the page's words, band without background, top factor and error; a labeled file also gets the
    real score, the prediction minus it, whether it was inside the range and whether the band was right (empty
    where the real score was blank or the band made no claim). Written in ``dialect``, by default the file's own
    (separator and decimal mark), so that the spreadsheet that saved the file opens the answer in columns."""
    roster = answer.roster
    dialect = dialect or roster.dialect
    comma = dialect.decimal == ","
    ids = roster.ids
    labeled = answer.evaluated is not None
    header = [
        "row",
        *([STUDENT_ID] if ids is not None else []),
        *FEATURE_NAMES,
        *OUTPUT_COLUMNS,
        *(OUTCOME_COLUMNS if labeled else ()),
    ]
    n = roster.size
    scores = lows = highs = bands = words = chances = withouts = [""] * n
    if answer.answers is not None:
        at = np.flatnonzero(roster.valid)
        predictions = answer.answers.predictions
        scores, lows, highs = (
            _rows_of(n, at, (_ONE_DECIMAL_COMMA if comma else _ONE_DECIMAL)[np.rint(values * 10).astype(np.int64)])
            for values in (predictions.scores, predictions.low, predictions.high)
        )
        bands = _rows_of(n, at, answer.answers.bands)
        coded = answer.answers.coded_bands  # a class list always has a cut score
        titles = np.array([BAND_TITLES[name] for name in coded.words], dtype=object)  # type: ignore[union-attr]
        words = _rows_of(n, at, titles[coded.codes])  # type: ignore[union-attr]
        if answer.answers.below_cut is not None:
            rounded = round_as_python(answer.answers.below_cut, PROBABILITY_DECIMALS)
            chances = _rows_of(n, at, [_decimal(f"{v:.3f}", comma) for v in rounded.tolist()])
        if answer.answers.without_background is not None:
            withouts = _rows_of(n, at, answer.answers.without_background)
    errors = [""] * n
    for at_row, row in roster.failed.items():
        errors[at_row] = row.error
    # Every cell that echoes the upload (ids, cells, errors naming an id) is defused for every reader of the file;
    # a valid row's categories are then answered in the schema's spelling.
    errors = defuse_column(errors)
    given = [defuse_column(roster.cells[name]) for name in FEATURE_NAMES]
    at = np.flatnonzero(roster.valid)
    if at.size:
        for j, name in enumerate(FEATURE_NAMES):
            if name in _CATEGORY_NAMES:
                column = np.array(given[j], dtype=object)
                column[at] = roster.students.values(name)
                given[j] = column.tolist()
            elif comma:  # a number as the dialect writes it
                column = np.array(given[j], dtype=object)
                column[at] = [_decimal(f"{v:g}", comma) for v in roster.students.values(name).tolist()]
                given[j] = column.tolist()
    first = [roster.numbers or range(2, n + 2)] + ([defuse_column([i or "" for i in ids])] if ids is not None else [])
    outcomes = (
        [
            ["" if i in roster.failed else _outcome_cell(item.get(name), comma) for i, item in enumerate(answer.items)]
            for name in OUTCOME_COLUMNS
        ]
        if labeled
        else []
    )
    return csv_columns_text(
        header,
        [*first, *given, scores, lows, highs, chances, bands, words, withouts, answer.top_factors, errors, *outcomes],
        dialect.separator,
    )


_NEEDS_QUOTES = needs_quotes(",")  # csv.writer's marks, and a lone CR, which it leaves unquoted


def csv_columns_text(header: Sequence[str], columns: Sequence[Sequence[Any]], separator: str = ",") -> str:
    """The CSV text ``csv.writer(out, lineterminator="\\n", delimiter=separator)`` writes for the header and these
    rows, given by column (two columns or more: a row of one empty cell, which the writer writes as ``""``, never
    occurs here).

    Each column is made text once (None as empty, other values by ``str``) and quoted as the writer quotes (a
    cell holding a comma, a quote or a line break, quotes doubled); a column of plain cells, nearly all of them,
    is checked in one search of its joined text. Then each row is joined by C loops, not written cell by cell:
    a 10,000-row class list in about a third of the writer's time. Same text (tests/web/test_roster_csv.py).
    """
    if len(header) < 2:
        raise ValueError("a class list's CSV has two columns or more")
    marks = needs_quotes(separator)
    cells = [_csv_column(column, marks) for column in columns]
    return (
        "\n".join([separator.join(_quoted(h, marks) for h in header), *map(separator.join, zip(*cells, strict=True))]) + "\n"
    )


def _csv_column(column: Sequence[Any], marks: Sequence[str] = _NEEDS_QUOTES) -> list[str]:
    text = [c if type(c) is str else "" if c is None else str(c) for c in column]
    joined = "".join(text)
    if not any(mark in joined for mark in marks):
        return text
    return [_quoted(c, marks) for c in text]


def _quoted(cell: str, marks: Sequence[str] = _NEEDS_QUOTES) -> str:
    if any(mark in cell for mark in marks):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def _decimal(text: str, comma: bool) -> str:
    return text.replace(".", ",") if comma else text


def _outcome_cell(value: Any, comma: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return _decimal(f"{value:g}", comma)


def template_csv() -> str:
    """A class list to fill in: ``student_id`` and the features, and one example student (the first value of
    each category, 70 for the scores) to overwrite."""
    example = ["example-1", *(f.categories[0] if isinstance(f, CategoricalFeature) else "70" for f in FEATURES)]
    return ",".join([STUDENT_ID, *FEATURE_NAMES]) + "\n" + ",".join(example) + "\n"


def csv_data_uri(text: str) -> str:
    """The CSV as a data: URI for a download link, with a byte-order mark so that spreadsheets read it as UTF-8
    (nothing is kept on the server)."""
    data = ("\ufeff" + text).encode("utf-8")
    return "data:text/csv;charset=utf-8;base64," + base64.b64encode(data).decode("ascii")

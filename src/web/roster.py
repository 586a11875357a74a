"""Class lists as CSV: parse (either header style, an optional student_id), predict, answer as CSV or JSON.

A bad row never fails the file: it keeps its place, with its row number and every field error. Only a
problem with the file as a whole (not UTF-8, no header, a required column missing, an unknown column, more
rows than MAX_BATCH) refuses it. Row numbers count student rows from 1 (the header is not a row; blank
lines are skipped and not counted).
"""

from __future__ import annotations

import base64
import csv
import functools
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from src.answers.bands import BAND_NAMES, Bands
from src.answers.evaluation import OUTCOME_COLUMNS
from src.answers.factors import describe_factor, top_actionable
from src.answers.model import PredictPipeline
from src.schema import CATEGORICAL_FEATURES, FEATURE_NAMES, NUMERIC_FEATURES, STUDENT_ID, TARGET, canonical_name
from src.validation import (
    MAX_DETAILS,
    REQUIRED,
    UNEXPECTED,
    FieldError,
    parse_form_number,
    short_field,
    take_real_score,
    validate_student,
)
from src.web.answers import Evaluated, batch_answer, evaluate_batch

CSV_TYPE = "text/csv"
MAX_ID_LENGTH = 64
OUTPUT_COLUMNS = ("math_score", "interval_low", "interval_high", "band", "top_factor", "error")
# A math score column (the public download's) is each student's real score: checked, and compared with the answer.
_ACCEPTED = frozenset(FEATURE_NAMES) | {STUDENT_ID, TARGET.name}


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
    number: int  # 1-based among the student rows
    values: Mapping[str, str]  # the uploaded cells, schema names
    student_id: str | None
    record: Mapping[str, Any] | None  # validated student, or None when the row has errors
    errors: Sequence[FieldError] = ()
    real: float | None = None  # the real math score, when the file has the column and the cell is not blank

    @property
    def error(self) -> str:
        """Every field error of the row, in one line: 'row 4: writing_score: must be ...; gender: is required'."""
        if not self.errors:
            return ""
        return f"row {self.number}: " + "; ".join(e.message if e.field == "row" else f"{e.field}: {e.message}"
                                                  for e in self.errors)


@dataclass(frozen=True)
class Roster:
    rows: list[RosterRow]
    has_ids: bool
    labeled: bool = False  # the file has a real math score column


@dataclass
class RosterAnswer:
    """The class list answered: one entry per row, in upload order."""

    roster: Roster
    model_version: str
    items: list[dict[str, Any]] = field(default_factory=list)  # JSON items, in row order
    factors_reason: str | None = None
    contributions: np.ndarray | None = None  # (valid rows, 7), for the top factors
    evaluated: Evaluated | None = None  # the valid rows against their real scores (a labeled file only)

    @property
    def evaluation(self) -> dict[str, Any] | None:
        return self.evaluated.evaluation if self.evaluated is not None else None

    @functools.cached_property
    def top_factors(self) -> list[str]:
        """Per row, the actionable factor that moves the score most, in words ("" for bad rows, or no factors)."""
        out = [""] * len(self.roster.rows)
        if self.contributions is None or not len(self.contributions):
            return out
        names, points = top_actionable(self.contributions)
        valid = (i for i, row in enumerate(self.roster.rows) if row.record is not None)
        for i, name, value in zip(valid, names, points, strict=True):
            out[i] = describe_factor(name, self.roster.rows[i].record[name], value)  # type: ignore[index]
        return out

    @property
    def failed(self) -> list[RosterRow]:
        return [row for row in self.roster.rows if row.errors]

    def band_counts(self) -> dict[str, int]:
        counts = Counter(item["band"]["name"] for item in self.items if "band" in item)
        return {name: counts.get(name, 0) for name in BAND_NAMES}


def parse_roster(data: bytes, max_rows: int) -> Roster:
    """Read a class list; RosterError for a problem with the whole file, row errors kept with their rows."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RosterError(400, "malformed_csv", f"the file is not UTF-8 text (byte {err.start})") from err
    try:
        lines = [cells for cells in csv.reader(io.StringIO(text, newline="")) if any(c.strip() for c in cells)]
    except csv.Error as err:
        raise RosterError(400, "malformed_csv", f"the file is not readable CSV: {err}") from err
    if not lines:
        raise RosterError(422, "validation_failed", "the file is empty: it needs a header row and one row per student",
                          [FieldError("file", "must have a header row and at least one student row")])
    header = [canonical_name(h.strip()) for h in lines[0]]
    _check_header(lines[0], header)
    body = lines[1:]
    if not body:
        raise RosterError(422, "validation_failed", "the file has a header but no student rows",
                          [FieldError("file", "must have at least one student row")])
    if len(body) > max_rows:
        raise RosterError(413, "batch_too_large", f"at most {max_rows} students per file, got {len(body)}")
    positions = [(name, i) for i, name in enumerate(header) if name in FEATURE_NAMES]
    id_at = header.index(STUDENT_ID) if STUDENT_ID in header else None
    real_at = header.index(TARGET.name) if TARGET.name in header else None
    width = len(header)
    rows: list[RosterRow] = []
    for number, cells in enumerate(body, start=1):
        student_id = cells[id_at] if id_at is not None and id_at < len(cells) else None
        if len(cells) != width:
            values = {name: cells[i] if i < len(cells) else "" for name, i in positions}
            error = FieldError("row", f"has {len(cells)} cells; the header has {width}", number)
            rows.append(RosterRow(number, values, student_id, None, (error,)))
            continue
        values = {name: cells[i] for name, i in positions}
        record = _quick_record(values)
        errors: list[FieldError] = []
        if record is None:  # something is wrong: the shared validator names every field and rule
            record, errors = validate_student(values, number, from_form=True)
        real = None
        if real_at is not None:
            _, real, broken = take_real_score({TARGET.name: cells[real_at]}, number, from_form=True)
            errors = [*errors, *broken]
        if student_id is not None and len(student_id) > MAX_ID_LENGTH:
            errors = [*errors, FieldError(STUDENT_ID, f"must be at most {MAX_ID_LENGTH} characters", number)]
            record = None
        rows.append(RosterRow(number, values, student_id, record if not errors else None, tuple(errors),
                              real if not errors else None))
    return Roster(rows, id_at is not None, real_at is not None)


_CATEGORIES = {f.name: frozenset(f.categories) for f in CATEGORICAL_FEATURES}
_RANGES = {f.name: (f.minimum, f.maximum) for f in NUMERIC_FEATURES}


def _quick_record(values: Mapping[str, str]) -> dict[str, Any] | None:
    """The validated record when every cell is valid, else None; accepts exactly what validate_student accepts."""
    record: dict[str, Any] = {}
    for name, allowed in _CATEGORIES.items():
        value = values[name]
        if value not in allowed:
            return None
        record[name] = value
    for name, (low, high) in _RANGES.items():
        number = parse_form_number(values[name])
        if number is None or not low <= number <= high:
            return None
        record[name] = number
    return record


def _check_header(raw: Sequence[str], header: Sequence[str]) -> None:
    errors = [FieldError(short_field(original.strip() or f"column {i + 1}"), UNEXPECTED + " (as a column)")
              for i, (original, name) in enumerate(zip(raw, header, strict=True)) if name not in _ACCEPTED]
    seen: set[str] = set()
    for original, name in zip(raw, header, strict=True):
        if name in seen:
            errors.append(FieldError(short_field(original.strip()), f"is given twice (as {short_field(name)!r} too)"))
        seen.add(name)
    errors += [FieldError(name, REQUIRED + " (as a column)") for name in FEATURE_NAMES if name not in header]
    if errors:
        shown = "; ".join(f"{e.field}: {e.message}" for e in errors[:MAX_DETAILS])
        more = f" (and {len(errors) - MAX_DETAILS} more)" if len(errors) > MAX_DETAILS else ""
        raise RosterError(422, "validation_failed", f"the header row is not a class list: {shown}{more}", errors)


def answer_roster(pipeline: PredictPipeline, roster: Roster, bands: Bands) -> RosterAnswer:
    """Predict every valid row as one batch; keep bad rows in place with their errors."""
    valid = [row for row in roster.rows if row.record is not None]
    answer = RosterAnswer(roster, pipeline.model_version)
    if not pipeline.factors.available:
        answer.factors_reason = pipeline.factors.reason
    batch = batch_answer(pipeline, [row.record for row in valid], bands) if valid else None  # type: ignore[misc]
    answer.contributions = batch.contributions if batch is not None else None
    if roster.labeled and batch is not None:
        reals = np.array([np.nan if row.real is None else row.real for row in valid], dtype=float)
        answer.evaluated = evaluate_batch(pipeline, batch, reals, bands)
    predicted = iter(batch.items if batch is not None else ())
    for row in roster.rows:
        if row.errors:
            item: dict[str, Any] = {"row": row.number, "error": row.error,
                                    "details": [{"field": e.field, "message": e.message} for e in row.errors]}
        else:
            item = next(predicted)
        if roster.has_ids:
            item = {STUDENT_ID: row.student_id, **item}
        answer.items.append(item)
    return answer


def roster_json(answer: RosterAnswer) -> dict[str, Any]:
    """The JSON answer: as the JSON batch's, bad rows in place as ``{"row", "error", "details"}``."""
    payload: dict[str, Any] = {"predictions": answer.items, "model_version": answer.model_version}
    if answer.factors_reason is not None:
        payload["factors_reason"] = answer.factors_reason
    if answer.evaluation is not None:
        payload["evaluation"] = answer.evaluation
    return payload


def roster_csv(answer: RosterAnswer) -> str:
    """The CSV answer: the uploaded rows in order, with score, range, band, top factor and error; a labeled file
    also gets the real score, the prediction minus it, whether it was inside the range and whether the band was
    right (empty where the real score was blank or the band made no claim)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    ids = answer.roster.has_ids
    labeled = answer.evaluated is not None
    writer.writerow(["row", *([STUDENT_ID] if ids else []), *FEATURE_NAMES, *OUTPUT_COLUMNS,
                     *(OUTCOME_COLUMNS if labeled else ())])
    for row, item, top in zip(answer.roster.rows, answer.items, answer.top_factors, strict=True):
        given = [_cell(row.values.get(name, "")) for name in FEATURE_NAMES]
        if row.errors:
            result = ["", "", "", "", "", row.error] + [""] * len(OUTCOME_COLUMNS) * labeled
        else:
            interval = item["interval"]
            result = [f"{item['math_score']:.1f}", f"{interval['low']:.1f}", f"{interval['high']:.1f}",
                      item["band"]["name"], top, ""]
            if labeled:
                result += [_outcome_cell(item.get(name)) for name in OUTCOME_COLUMNS]
        writer.writerow([row.number, *([_cell(row.student_id or "")] if ids else []), *given, *result])
    return out.getvalue()


def _outcome_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:g}"


def csv_data_uri(text: str) -> str:
    """The CSV as a data: URI for a download link (nothing is kept on the server)."""
    return "data:text/csv;charset=utf-8;base64," + base64.b64encode(text.encode("utf-8")).decode("ascii")


def _cell(value: str) -> str:
    """Defuse spreadsheet formulas in passed-through text (a leading =, +, -, @); plain numbers stay as they are."""
    if value and value[0] in "=+-@\t\r" and parse_form_number(value) is None:
        return "'" + value
    return value

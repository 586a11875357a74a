"""Checking students against the schema: one JSON or form student, a JSON batch, a class list's columns, a batch
file's table, or a training file.

Every check applies the rules of src/schema.py (text matched as its docstring says, JSON exactly). Nothing
else is changed: a field that breaks a rule is reported with the field's name and the rule.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import operator
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from src.json_scan import JsonText, scan
from src.schema import (
    CATEGORICAL_FEATURES,
    COLUMNS,
    DECIMAL_COMMA_PATTERN,
    FEATURE_NAMES,
    FEATURES,
    HEADER_ALIASES,
    NUMBER_PATTERN,
    NUMERIC_FEATURES,
    REAL_SCORE,
    REAL_SCORE_KEYS,
    STUDENT_ID,
    TARGET,
    CategoricalFeature,
    NumericFeature,
    SchemaError,
    canonical_category,
    canonical_name,
)

REQUIRED = "is required"
UNEXPECTED = "is not an accepted field"
GIVEN_TWICE = "is given more than once"
_FEATURE_SET = frozenset(FEATURE_NAMES)
# Every key a student may be sent with (schema names and the public download's headers) -> its schema name.
_ACCEPTED_KEYS: dict[Any, str] = {
    **{name: name for name in FEATURE_NAMES},
    **{alias: name for alias, name in HEADER_ALIASES.items() if name in _FEATURE_SET},
}
_REAL_KEYS = frozenset(REAL_SCORE_KEYS)
_LABEL_KEYS: dict[Any, str] = {**_ACCEPTED_KEYS, **dict.fromkeys(REAL_SCORE_KEYS, TARGET.name)}
# A client may send any number of fields with names of any length: an answer lists at most MAX_DETAILS errors
# (and says how many more there were), each naming a field by at most MAX_FIELD_CHARS characters.
MAX_DETAILS = 50
MAX_FIELD_CHARS = 64
OTHER_FIELD = "other"
# The text rules of src/schema.py (its docstring says them once).
_DECIMAL_COMMA = re.compile(DECIMAL_COMMA_PATTERN)
_PLAIN_NUMBER = re.compile(NUMBER_PATTERN)


@dataclass(frozen=True)
class FieldError:
    """One broken rule: which student (for batches), which field, and the rule."""

    field: str
    message: str
    index: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "message": self.message}
        if self.index is not None:
            out = {"index": self.index, **out}
        return out


class JsonObject(dict):
    """A JSON object as parsed by ``parse_json``: a dict that remembers the keys given more than once."""

    __slots__ = ("duplicated",)
    duplicated: tuple[str, ...]


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = JsonObject(pairs)
    obj.duplicated = ()
    if len(obj) != len(pairs):  # the last value would win silently: keep every name that came twice
        counts = Counter(key for key, _ in pairs)
        obj.duplicated = tuple(key for key, n in counts.items() if n > 1)
    return obj


# Made once: ``json.loads`` with a hook builds a new decoder on every call, half the time of a student's parse.
# Shared by threads as json.loads shares its default decoder.
_DECODER = json.JSONDecoder(object_pairs_hook=_object)


def parse_json(text: str | bytes, scanned: JsonText | None = None) -> Any:
    """``json.loads`` that keeps, for each object, the keys given more than once (a ValueError if not JSON).

    The form and a class list refuse a field given twice; so does the JSON API, rather than keep the last value.
    A student or a batch of students as the API's clients send them is read by orjson (``_read_plainly``), about
    eight times faster; anything else, or any doubt, by the standard parser. ``scanned``: what
    ``src.json_scan.scan`` found in these very bytes, when it has been asked already.
    """
    if isinstance(text, (bytes, bytearray)):  # as json.loads reads bytes: UTF-8, -16 or -32 by the first bytes
        plain = _read_plainly(text, scanned)
        if plain is not None:
            return plain
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    elif text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _DECODER.decode(text)


_LONGEST_INTEGER = 18  # digits every 64-bit integer can hold; orjson reads a longer one as a float


def _read_plainly(raw: bytes, scanned: JsonText | None = None) -> dict[str, Any] | None:
    """A JSON object of plain values, or one whose ``instances`` is a list of such objects, as orjson reads it when
    that is exactly what ``parse_json`` gives; else None (the standard parser then reads it).

    Exact when no key is given twice. The bytes' colons are the keys' colons plus any colon inside a string; the
    objects read have as many keys as were written, less those given twice; so as many colons as keys read at the
    two levels counted means no key given twice, no colon in a string and no object deeper than the students'.
    Also not taken: a backslash (an escape), or a run of 19 digits (orjson reads an integer beyond 64 bits as a
    float, json as an int). orjson refuses what json reads beyond plain JSON (NaN, Infinity, a number beyond a
    float, UTF-16 or -32, a byte-order mark): those go the standard way too.
    """
    text = scan(raw) if scanned is None else scanned
    if text.backslash or text.longest_digits > _LONGEST_INTEGER:
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(body) is not dict:
        return None
    keys = len(body)
    instances = body.get("instances")
    if type(instances) is list:
        if not set(map(type, instances)) <= {dict}:
            return None
        keys += sum(map(len, instances))
    return body if text.colons == keys else None


def duplicated_keys(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys given more than once in an object ``parse_json`` made (none for any other mapping)."""
    return getattr(obj, "duplicated", ())


def field_label(field: str) -> str:
    """The field as a metric label: a schema feature name or the real score's (either header style), else ``other``.

    A closed set, so that no field name a client invents becomes a new metric series.
    """
    return _LABEL_KEYS.get(field, OTHER_FIELD)


def short_field(key: Any) -> str:
    """A client's field name as shown in an answer: text, cut to MAX_FIELD_CHARS characters."""
    text = key if isinstance(key, str) else str(key)
    return text if len(text) <= MAX_FIELD_CHARS else text[: MAX_FIELD_CHARS - 1] + "…"


def error_details(errors: Sequence[FieldError]) -> dict[str, Any]:
    """The ``details`` of an answer: the first MAX_DETAILS errors, and ``more_details`` when some were left out."""
    out: dict[str, Any] = {"details": [e.as_dict() for e in errors[:MAX_DETAILS]]}
    if len(errors) > MAX_DETAILS:
        out["more_details"] = len(errors) - MAX_DETAILS
    return out


class ValidationFailed(SchemaError):
    """Raised with every field error found, so a client can fix them all at once."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in self.errors))


def validate_student(
    raw: Any, index: int | None = None, *, from_form: bool = False
) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """Check one student; return the clean record (schema names) or the list of field errors.

    Headers of the public download (``race/ethnicity``, ``reading score`` ...) are accepted as keys.
    ``from_form`` (the teachers' form and class lists) applies the text rules of src/schema.py: names and
    categories matched ignoring case and surrounding spaces (``" Female "`` is ``female``; the record holds the
    schema's spelling), numbers parsed from plain decimal text, a decimal comma (``"7,5"``) refused with a
    message of its own. The JSON API (``from_form`` false) takes names and categories exactly as written.
    """
    if not isinstance(raw, Mapping):
        return None, [FieldError("student", "must be an object of field names to values", index)]
    errors = [FieldError(short_field(key), GIVEN_TWICE, index) for key in duplicated_keys(raw)]
    record: dict[str, Any] = {}
    for key, value in raw.items():
        name = _ACCEPTED_KEYS.get(key)  # one lookup per key: a client may send thousands of unknown ones
        if name is None and from_form and isinstance(key, str):  # the text rule for names (src.schema)
            name = _ACCEPTED_KEYS.get(canonical_name(key))
        if name is None:
            errors.append(FieldError(short_field(key), UNEXPECTED, index))
        elif name in record:
            errors.append(FieldError(short_field(key), f"is given twice (as {name!r} too)", index))
        else:
            record[name] = value
    for feature in FEATURES:
        if feature.name not in record:
            errors.append(FieldError(feature.name, REQUIRED, index))
            continue
        value = record[feature.name]
        if value is None or (from_form and value == ""):
            errors.append(FieldError(feature.name, REQUIRED, index))
            continue
        if from_form and not isinstance(feature, NumericFeature) and isinstance(value, str):
            value = canonical_category(feature.name, value)
            record[feature.name] = value
        if from_form and isinstance(feature, NumericFeature) and isinstance(value, str):
            message = _decimal_comma(value)
            if message is not None:
                errors.append(FieldError(feature.name, message, index))
                continue
            value = _parse_number(value)
            record[feature.name] = value
        message = feature.check(value)
        if message is not None:
            errors.append(FieldError(feature.name, message, index))
    if errors:
        return None, errors
    return record, []


def has_real_score(raw: Any) -> bool:
    """True when a student object carries a real math score field (either header style), blank or not."""
    return isinstance(raw, Mapping) and any(key in raw for key in REAL_SCORE_KEYS)


def take_real_score(
    raw: Any, index: int | None = None, *, from_form: bool = False
) -> tuple[Any, float | None, list[FieldError]]:
    """Split a student's real math score from its features: (the other fields, the real score, its errors).

    The real score is optional and may be blank (``None``, or ``""`` from a form or a CSV cell); otherwise it
    follows the target's rule, with the form's reading of numbers when ``from_form``. Given under both header
    styles, it is refused as any field given twice is.
    """
    if not isinstance(raw, Mapping):
        return raw, None, []
    given = [key for key in REAL_SCORE_KEYS if key in raw]
    if not given:
        return raw, None, []
    rest: dict[str, Any] = {k: v for k, v in raw.items() if k not in _REAL_KEYS}
    if duplicated_keys(raw):  # keys given twice (the real score's too) are still refused by validate_student
        rest = JsonObject(rest)
        rest.duplicated = duplicated_keys(raw)  # type: ignore[attr-defined]
    if len(given) > 1:
        return rest, None, [FieldError(given[1], f"is given twice (as {given[0]!r} too)", index)]
    value = raw[given[0]]
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return rest, None, []
    if from_form and isinstance(value, str):
        message = _decimal_comma(value)
        if message is not None:
            return rest, None, [FieldError(TARGET.name, message, index)]
        value = _parse_number(value)
    message = TARGET.check(value)
    if message is not None:
        return rest, None, [FieldError(TARGET.name, message, index)]
    return rest, float(value) + 0.0, []  # + 0.0: a real score of -0 is 0, echoed as 0 in every answer


def validate_labeled_students(raws: Sequence[Any]) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Check a batch whose students may carry their real math score: the records (features only) and the real
    scores (NaN where blank); ValidationFailed with every error, as ``validate_students``."""
    records: list[dict[str, Any]] = []
    reals = np.full(len(raws), np.nan)
    errors: list[FieldError] = []
    for i, raw in enumerate(raws):
        rest, real, found = take_real_score(raw, i)
        record, more = validate_student(rest, i)
        found = more + found
        if found:
            errors.extend(found)
        else:
            records.append(record)  # type: ignore[arg-type]
            reals[i] = np.nan if real is None else real
    if errors:
        raise ValidationFailed(errors)
    return records, reals


def validate_students(raws: Sequence[Any]) -> list[dict[str, Any]]:
    """Check a batch; raise ValidationFailed listing every error with its student's index."""
    records: list[dict[str, Any]] = []
    errors: list[FieldError] = []
    for i, raw in enumerate(raws):
        record, found = validate_student(raw, i)
        if found:
            errors.extend(found)
        else:
            records.append(record)  # type: ignore[arg-type]
    if errors:
        raise ValidationFailed(errors)
    return records


def record_lines(data: bytes) -> list[int] | None:
    """The file line each CSV record after the header starts on, blank lines skipped as pandas skips them.

    None when the bytes are not UTF-8 text the csv module reads.
    """
    try:
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
        starts: list[int] = []
        previous_end = 0
        for row in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if len(row) > 1 or (row and row[0].strip()):
                starts.append(start)
    except (UnicodeDecodeError, csv.Error):
        return None
    return starts[1:]  # the first record is the header


def _decimal_comma(text: str) -> str | None:
    """The message for a number written with a decimal comma (``"7,5"``), else None.

    A comma is never read as a decimal point nor dropped: the teacher is asked to write the number again.
    """
    stripped = text.strip()
    if not _DECIMAL_COMMA.fullmatch(stripped):
        return None
    return f"must be written with a point, not a comma: {stripped.replace(',', '.')}"


def parse_form_number(text: str) -> float | None:
    """A number typed in a form or a CSV cell, read exactly; None when it is not plainly written."""
    stripped = text.strip()
    if not _PLAIN_NUMBER.fullmatch(stripped):
        return None
    return float(stripped)


def _parse_number(text: str) -> Any:
    number = parse_form_number(text)
    return text if number is None else number


def normalise_headers(frame: pd.DataFrame) -> pd.DataFrame:
    """Rename the public download's headers to the schema's names; refuse a file missing a column."""
    renamed = frame.rename(columns={c: canonical_name(str(c).strip()) for c in frame.columns})
    duplicated = renamed.columns[renamed.columns.duplicated()].tolist()
    if duplicated:
        raise SchemaError(f"columns given twice (in both header styles?): {', '.join(duplicated)}")
    missing = [c for c in FEATURE_NAMES + (TARGET.name,) if c not in renamed.columns]
    if missing:
        raise SchemaError(
            "missing required column(s): " + ", ".join(missing) + f"; found: {', '.join(map(str, frame.columns))}"
        )
    return renamed


def validate_frame(frame: pd.DataFrame, lines: Sequence[int] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a training table into valid rows (typed, schema columns only) and rejected rows with a reason.

    ``frame`` holds raw text as read from a CSV. The rules are those of every other file of students
    (``check_students_frame``), and the math score is required. Each rejected row keeps its original values, the
    line of the file it starts on (``lines``, one per row; by default the header is line 1 and row i is line
    i + 2) and every rule it broke.
    """
    if lines is None or len(lines) != len(frame):
        lines = range(2, len(frame) + 2)
    frame = normalise_headers(frame)
    checked, students, errors = check_students_frame(frame[list(COLUMNS)].reset_index(drop=True))
    real = frame[TARGET.name].reset_index(drop=True)
    blank = (real.isna() | (real.astype(str).str.strip() == "")).to_numpy()
    if blank.any():  # a file of students to predict may leave it blank; training may not
        at = np.flatnonzero(blank)
        missing = pd.DataFrame({"position": at, "field": TARGET.name, "value": real.to_numpy(dtype=object)[at]})
        errors = pd.concat([errors, missing.assign(reason=REQUIRED)], ignore_index=True)
    ok = checked.to_numpy() & ~blank
    order = {name: i for i, name in enumerate(COLUMNS)}
    errors = errors.assign(_order=errors["field"].map(order)).sort_values(["position", "_order"], kind="stable")
    reasons = (errors["field"] + ": " + errors["reason"]).groupby(errors["position"]).agg("; ".join)
    rejected_mask = ~ok
    rejected = frame.loc[rejected_mask].copy()
    rejected.insert(0, "line", np.asarray(lines, dtype=int)[rejected_mask])
    rejected["reason"] = reasons.reindex(np.flatnonzero(rejected_mask)).to_numpy(dtype=object)
    valid = students.loc[~blank[checked.to_numpy()]].rename(columns={REAL_SCORE: TARGET.name})[list(COLUMNS)]
    valid = valid.reset_index(drop=True)
    for feature in CATEGORICAL_FEATURES:
        valid[feature.name] = valid[feature.name].astype(str)
    return valid, rejected.reset_index(drop=True)


def normalise_student_headers(frame: pd.DataFrame, passthrough: Sequence[str] = (STUDENT_ID, TARGET.name)) -> pd.DataFrame:
    """Rename headers of either style to the schema's names for a file of students to predict.

    Refuses, naming them, columns given twice, missing features, and columns that are neither a feature nor a
    pass-through column (``student_id``, and the real math score, checked by ``check_students_frame``): the
    JSON API refuses unexpected fields too.
    """
    renamed = frame.rename(columns={c: canonical_name(str(c).strip()) for c in frame.columns})
    duplicated = renamed.columns[renamed.columns.duplicated()].tolist()
    if duplicated:
        raise SchemaError(f"columns given twice (in both header styles?): {', '.join(map(str, duplicated))}")
    missing = [c for c in FEATURE_NAMES if c not in renamed.columns]
    if missing:
        raise SchemaError(
            "missing required column(s): " + ", ".join(missing) + f"; found: {', '.join(map(str, frame.columns))}"
        )
    unexpected = [str(c) for c in frame.columns if canonical_name(str(c).strip()) not in _FEATURE_SET | set(passthrough)]
    if unexpected:
        raise SchemaError(
            f"column(s) {', '.join(unexpected)} {UNEXPECTED}; a file of students has the features"
            + (f" and optionally {', '.join(passthrough)}" if passthrough else "")
        )
    return renamed


def _canonical_categories(feature: CategoricalFeature, column: pd.Series) -> pd.Series:
    """A column of categories in the schema's spelling where text matches one (``canonical_category``); any
    other cell unchanged."""
    if column.isin(feature.categories).all():
        return column
    return column.map(lambda v: canonical_category(feature.name, v) if isinstance(v, str) else v, na_action="ignore")


def check_students_frame(frame: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame, pd.DataFrame]:
    """Check a table of students to predict (raw text from a CSV, or typed values) against the schema, vectorised.

    ``frame`` has the schema's column names. Returns ``(ok, students, errors)``: a boolean mask of the valid
    rows; those rows as typed students (categories as text, scores as floats), in order; and one row per broken
    rule (``position`` in ``frame``, ``field``, ``value`` as given, ``reason``), by position then schema order.
    The rules and messages are those of the JSON API; nothing is fixed or guessed. When ``frame`` has the real
    math score (``math_score``), it is checked by the target's rule (blank allowed) and returned as the
    students' ``real_math_score`` column (NaN where blank), never as a feature.
    """
    positions = np.arange(len(frame))
    parts: list[pd.DataFrame] = []
    ok = np.ones(len(frame), dtype=bool)
    students = pd.DataFrame(index=frame.index)

    def broken(mask: np.ndarray, name: str, reason: str | list[str | None]) -> None:
        if mask.any():
            parts.append(
                pd.DataFrame(
                    {
                        "position": positions[mask],
                        "field": name,
                        "value": frame[name].to_numpy(dtype=object)[mask],
                        "reason": reason,
                    }
                )
            )
            ok[mask] = False

    labeled = TARGET.name in frame.columns
    for feature in FEATURES + ((TARGET,) if labeled else ()):
        column = frame[feature.name]
        missing = (column.isna() | (column.astype(str).str.strip() == "")).to_numpy()
        comma = np.zeros(len(frame), dtype=bool)
        if isinstance(feature, NumericFeature):
            if column.dtype.kind in "biuf":  # typed numbers (a DataFrame handed to the MLflow model)
                numbers = column.astype(float)
            else:  # text, read exactly as the form and the class list read it (parse_form_number)
                text = column.astype(str).str.strip()
                plain = text.str.fullmatch(_PLAIN_NUMBER.pattern).fillna(False).to_numpy(dtype=bool)
                numbers = pd.to_numeric(text.where(plain), errors="coerce").astype(float)
                comma = ~missing & text.str.fullmatch(_DECIMAL_COMMA.pattern).fillna(False).to_numpy(dtype=bool)
            allowed = (numbers.between(feature.minimum, feature.maximum) & np.isfinite(numbers)).to_numpy()
            students[REAL_SCORE if feature is TARGET else feature.name] = numbers.where(~missing, np.nan)
        else:  # the text rule: any case, surrounding spaces; kept in the schema's spelling
            spelled = _canonical_categories(feature, column)
            allowed = spelled.isin(feature.categories).to_numpy()
            students[feature.name] = spelled.astype(object)
        if feature is not TARGET:  # a real score may be blank: not known yet
            broken(missing, feature.name, REQUIRED)
        # a decimal comma gets the form's own message ("... with a point, not a comma: 7.5")
        broken(comma, feature.name, [_decimal_comma(str(v)) for v in column.to_numpy(dtype=object)[comma]])
        broken(~missing & ~comma & ~allowed, feature.name, feature.rule)
    columns = ["position", "field", "value", "reason"]
    if parts:
        order = {name: i for i, name in enumerate((*FEATURE_NAMES, TARGET.name))}
        errors = pd.concat(parts, ignore_index=True)
        errors = errors.assign(_order=errors["field"].map(order)).sort_values(["position", "_order"], kind="stable")
        errors = errors[columns].reset_index(drop=True)
    else:
        errors = pd.DataFrame({c: pd.Series(dtype=object if c != "position" else np.int64) for c in columns})
    mask = pd.Series(ok, index=frame.index)
    return mask, students.loc[ok].reset_index(drop=True), errors


_CATEGORY_CODES = {f.name: {c: i for i, c in enumerate(f.categories)} for f in CATEGORICAL_FEATURES}
_CATEGORICAL_NAMES = tuple(f.name for f in CATEGORICAL_FEATURES)
_CATEGORY_TABLES = tuple((f.name, _CATEGORY_CODES[f.name]) for f in CATEGORICAL_FEATURES)  # schema order
_NUMERIC_NAMES = tuple(f.name for f in NUMERIC_FEATURES)


def _category_codes(name: str, texts: Sequence[str]) -> np.ndarray:
    """Each text's position among the feature's categories, -1 for any other text (exactly as written).

    One dictionary lookup per cell, mapped in C: several times faster on a list of str than ``get_indexer``,
    which first makes the list an array and an index of its own."""
    return np.fromiter(map(_CATEGORY_CODES[name].get, texts, itertools.repeat(-1)), dtype=np.intp, count=len(texts))


@dataclass(frozen=True)
class StudentColumns(Sequence[Mapping[str, Any]]):
    """Checked students as columns: each category as its position among the schema's categories, scores as floats.

    What every answer to many students is computed from (``src.answers.columns``). It is also a read-only
    sequence of records, each made only when asked for (the monitoring observers read a window of them).
    """

    size: int
    codes: Mapping[str, np.ndarray]  # categorical feature -> index into feature.categories
    numbers: Mapping[str, np.ndarray]  # numeric feature -> float64

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> StudentColumns:
        """Valid students as a frame with the schema's columns (categories as text, scores as numbers)."""
        return cls.from_columns({name: frame[name] for name in FEATURE_NAMES}, len(frame))

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> StudentColumns:
        """Valid students as records (as ``validate_student`` returns them)."""
        if isinstance(records, StudentColumns):
            return records
        # each feature's codes (or scores) read straight off the records: one array call per matrix
        found = [[table.get(record[name], -1) for record in records] for name, table in _CATEGORY_TABLES]
        if any(-1 in row for row in found):
            return cls.from_columns(_feature_columns(records), len(records))  # names the first unknown category
        size = len(records)
        every = np.array(found, dtype=np.intp).reshape(len(CATEGORICAL_FEATURES), size)
        scores = np.array([[record[name] for record in records] for name in _NUMERIC_NAMES], dtype=np.float64)
        return cls._of_matrices(every, scores.reshape(len(_NUMERIC_NAMES), size))

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any], size: int) -> StudentColumns:
        # each feature's categories looked up in one pass (C), straight into its row of the codes
        every = np.empty((len(CATEGORICAL_FEATURES), size), dtype=np.intp)
        for row, feature in enumerate(CATEGORICAL_FEATURES):
            lookup = map(_CATEGORY_CODES[feature.name].get, columns[feature.name], itertools.repeat(-1))
            every[row] = np.fromiter(lookup, dtype=np.intp, count=size)
            if every[row].min(initial=0) < 0:
                raise SchemaError(f"{feature.name}: {feature.rule} (unchecked students given)")
        scores = np.array([columns[name] for name in _NUMERIC_NAMES], dtype=np.float64).reshape(len(_NUMERIC_NAMES), size)
        return cls._of_matrices(every, scores)

    @classmethod
    def _of_matrices(cls, codes: np.ndarray, scores: np.ndarray) -> StudentColumns:
        """Students from their (categorical features, n) codes and (numeric features, n) scores, rows in schema
        order; each feature's column is a row of them (a view, made when asked for). Built without the dataclass's
        ``__init__``: its fields and the two matrices set at once, on the path of every single-student answer."""
        made = object.__new__(cls)
        made.__dict__.update(
            size=codes.shape[1],
            codes=_Rows(_CATEGORICAL_ROWS, codes),
            numbers=_Rows(_NUMERIC_ROWS, scores),
            code_matrix=codes,
            number_matrix=scores,
        )
        return made

    @functools.cached_property
    def code_matrix(self) -> np.ndarray:
        """The category codes as one (categorical features, n) array, rows in schema order."""
        return np.array([self.codes[f.name] for f in CATEGORICAL_FEATURES], dtype=np.intp).reshape(
            len(CATEGORICAL_FEATURES), self.size
        )

    @functools.cached_property
    def number_matrix(self) -> np.ndarray:
        """The scores as one (numeric features, n) float array, rows in schema order."""
        return np.array([self.numbers[f.name] for f in NUMERIC_FEATURES], dtype=np.float64).reshape(
            len(NUMERIC_FEATURES), self.size
        )

    def values(self, name: str) -> np.ndarray:
        """One feature's values: categories as text (object array), scores as floats."""
        if name in self.codes:
            return _CATEGORY_VALUES[name][self.codes[name]]
        return self.numbers[name]

    def take(self, mask: np.ndarray) -> StudentColumns:
        """The students where ``mask`` is true, in order."""
        return StudentColumns(
            int(np.count_nonzero(mask)),
            {k: v[mask] for k, v in self.codes.items()},
            {k: v[mask] for k, v in self.numbers.items()},
        )

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            return _records_of({name: self.values(name)[key] for name in FEATURE_NAMES})
        if not -self.size <= key < self.size:
            raise IndexError(key)
        return {
            name: _CATEGORY_VALUES[name][self.codes[name][key]] if name in self.codes else self.numbers[name][key].item()
            for name in FEATURE_NAMES
        }

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self[:])


_CATEGORY_VALUES = {f.name: np.asarray(f.categories, dtype=object) for f in CATEGORICAL_FEATURES}
_CATEGORICAL_ROWS = {name: i for i, name in enumerate(_CATEGORICAL_NAMES)}
_NUMERIC_ROWS = {name: i for i, name in enumerate(_NUMERIC_NAMES)}


class _Rows(Mapping[str, np.ndarray]):
    """A matrix's rows by feature name, each a view made when asked for (``StudentColumns.codes``, ``numbers``)."""

    __slots__ = ("_matrix", "_rows")

    def __init__(self, rows: Mapping[str, int], matrix: np.ndarray) -> None:
        self._rows = rows
        self._matrix = matrix

    def __getitem__(self, name: str) -> np.ndarray:
        return self._matrix[self._rows[name]]

    def __contains__(self, name: object) -> bool:
        return name in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return repr(dict(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Rows, (self._rows, self._matrix))


_FEATURE_VALUES = operator.itemgetter(*FEATURE_NAMES)  # a record's values in schema order
_NUMBER_TYPES = frozenset((int, float))


def _feature_columns(records: Sequence[Mapping[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """Records (each with every feature) as one tuple of values per feature, gathered in one pass."""
    columns = list(zip(*map(_FEATURE_VALUES, records), strict=True)) or [()] * len(FEATURE_NAMES)
    return dict(zip(FEATURE_NAMES, columns, strict=True))


def _records_of(columns: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    lists = [columns[name].tolist() for name in FEATURE_NAMES]
    return [dict(zip(FEATURE_NAMES, row, strict=True)) for row in zip(*lists, strict=True)]


def check_instances(instances: Sequence[Any]) -> StudentColumns | None:
    """A JSON batch checked column by column: its students as columns when every one is valid, else None.

    Accepts exactly what ``validate_student`` accepts from students sent with the schema's names (an instance
    sent with the public download's headers, or with anything wrong, gives None: then ``validate_students``
    names every field and rule, one student at a time).
    """
    # plain objects (a dict, or one parse_json made without a key given twice) with exactly the schema's keys:
    # as many keys as the schema has, every one of them there (a key missing is a KeyError below); each test one
    # pass in C over the students
    kinds = set(map(type, instances))
    if not kinds <= {dict, JsonObject}:
        return None
    if JsonObject in kinds and any(map(duplicated_keys, instances)):
        return None
    if not set(map(len, instances)) <= {len(FEATURE_NAMES)}:
        return None
    try:
        columns = _feature_columns(instances)
        for feature in NUMERIC_FEATURES:
            column = columns[feature.name]
            if not set(map(type, column)) <= _NUMBER_TYPES:  # bool, str, None, ...: refused by the rule
                return None
            values = np.array(column, dtype=np.float64)
            if not (np.isfinite(values) & (values >= feature.minimum) & (values <= feature.maximum)).all():
                return None
        # a category not written as the schema writes it, or not text at all (a number, null, a list), has no
        # code: SchemaError, or TypeError for a value that cannot be looked up
        return StudentColumns.from_columns(columns, len(instances))
    except (KeyError, TypeError, OverflowError, ValueError, SchemaError):  # a huge value...
        return None


def check_text_columns(cells: Mapping[str, Sequence[str]], size: int) -> tuple[np.ndarray, StudentColumns]:
    """Text cells (a class list's), checked column by column as ``validate_student(from_form=True)`` checks them:
    categories ignoring case and surrounding spaces (``canonical_category``), kept in the schema's spelling.

    Returns the mask of the rows whose every cell is valid, and those rows as columns. A row that is not
    valid is left to ``validate_student``, which names every field and rule.
    """
    ok = np.ones(size, dtype=bool)
    codes: dict[str, np.ndarray] = {}
    for feature in CATEGORICAL_FEATURES:
        column = list(cells[feature.name])
        found = _category_codes(feature.name, column)
        loose = np.flatnonzero(found < 0)
        if loose.size:  # "Female", " group b ": read as a spreadsheet or a person types them
            found[loose] = _category_codes(
                feature.name, [canonical_category(feature.name, column[i]) for i in loose.tolist()]
            )
        ok &= found >= 0
        codes[feature.name] = found
    numbers: dict[str, np.ndarray] = {}
    match = _PLAIN_NUMBER.fullmatch
    for feature in NUMERIC_FEATURES:
        stripped = list(map(str.strip, cells[feature.name]))
        # Each distinct text read once (a class's scores repeat): its number, NaN when not plainly written.
        read = {text: float(text) if match(text) is not None else np.nan for text in dict.fromkeys(stripped)}
        values = np.fromiter(map(read.__getitem__, stripped), dtype=np.float64, count=size)
        ok &= (values >= feature.minimum) & (values <= feature.maximum)  # NaN (not plainly written) is out
        numbers[feature.name] = values
    return ok, StudentColumns(int(ok.sum()), {k: v[ok] for k, v in codes.items()}, {k: v[ok] for k, v in numbers.items()})


def check_text_table(frame: pd.DataFrame) -> tuple[np.ndarray, StudentColumns, pd.DataFrame]:
    """``check_students_frame`` for a table of text cells, column by column with Arrow's compute functions.

    A cell is taken at once when it is exactly a category, or a plainly written number (no spaces) in range;
    the rows with any other cell are checked by ``check_students_frame``, which names every rule they break
    (and still takes a row it finds valid). Returns ``(ok, students, errors)``: the mask of valid rows, those
    rows as columns, and the errors as ``check_students_frame`` gives them (``position`` in ``frame``).
    """
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:  # the serving set has no Arrow: every row through the pandas check
        return _check_with_pandas(frame, np.ones(len(frame), dtype=bool))
    size = len(frame)
    plain = np.ones(size, dtype=bool)
    codes: dict[str, np.ndarray] = {}
    numbers: dict[str, np.ndarray] = {}
    try:
        for feature in CATEGORICAL_FEATURES:
            found = pc.index_in(
                pa.array(frame[feature.name], type=pa.string()), value_set=pa.array(feature.categories, type=pa.string())
            )
            plain &= found.is_valid().to_numpy(zero_copy_only=False)
            codes[feature.name] = found.fill_null(0).to_numpy(zero_copy_only=False).astype(np.intp)
        for feature in NUMERIC_FEATURES:
            # Scores repeat (a hundred or so distinct texts in a class or a cohort): each distinct text is
            # matched and converted once, then looked up by the rows' dictionary indices.
            text = pa.array(frame[feature.name], type=pa.string())
            if isinstance(text, pa.ChunkedArray):  # a column of Arrow's blocks (a chunk read across two of them)
                text = text.combine_chunks()
            encoded = text.dictionary_encode()
            distinct = encoded.dictionary
            matched = pc.fill_null(pc.match_substring_regex(distinct, f"^(?:{_PLAIN_NUMBER.pattern})$"), False)
            parsed = pc.cast(pc.if_else(matched, distinct, "nan"), pa.float64()).to_numpy(zero_copy_only=False)
            indices = encoded.indices
            if indices.null_count:  # a missing cell: the slot after the distinct texts, NaN
                indices = pc.fill_null(indices, len(distinct))
            values = np.append(parsed, np.nan)[indices.to_numpy(zero_copy_only=False)]
            plain &= (values >= feature.minimum) & (values <= feature.maximum)  # NaN (not plainly written) is out
            numbers[feature.name] = values
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not text after all: the pandas check knows every case
        return _check_with_pandas(frame, np.ones(size, dtype=bool))
    checked = StudentColumns(size, codes, numbers)
    if plain.all():
        return plain, checked, _no_errors()
    ok, others, errors = _check_with_pandas(frame, ~plain)
    full_codes = {k: v.copy() for k, v in codes.items()}
    full_numbers = {k: v.copy() for k, v in numbers.items()}
    taken = ok & ~plain  # rows the pandas check found valid though a cell was not plainly written
    for name in full_codes:
        full_codes[name][taken] = others.codes[name]
    for name in full_numbers:
        full_numbers[name][taken] = others.numbers[name]
    return ok, StudentColumns(size, full_codes, full_numbers).take(ok), errors


def _check_with_pandas(frame: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, StudentColumns, pd.DataFrame]:
    """``check_students_frame`` on the rows of ``rows`` (the others are valid); positions in the whole frame."""
    at = np.flatnonzero(rows)
    subset = frame.iloc[at].reset_index(drop=True)
    ok_subset, students, errors = check_students_frame(subset)
    ok = ~rows
    ok[at] = ok_subset.to_numpy()
    errors = errors.assign(position=at[errors["position"].to_numpy(dtype=np.int64)])
    return ok, StudentColumns.from_frame(students), errors


def _no_errors() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype=object if c != "position" else np.int64) for c in ("position", "field", "value", "reason")}
    )

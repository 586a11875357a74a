"""Checking students against the schema: one request at a time, or a whole training file at once.

Nothing here fixes a value: a field that breaks a rule is reported with the field's name and the rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from src.schema import (
    CATEGORICAL_FEATURES,
    FEATURE_NAMES,
    FEATURES,
    NUMERIC_FEATURES,
    TARGET,
    NumericFeature,
    SchemaError,
    canonical_name,
)

REQUIRED = "is required"
UNEXPECTED = "is not an accepted field"
_FEATURE_SET = frozenset(FEATURE_NAMES)


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
    ``from_form`` parses numeric text, since an HTML form sends every value as a string.
    """
    if not isinstance(raw, Mapping):
        return None, [FieldError("student", "must be an object of field names to values", index)]
    errors: list[FieldError] = []
    record: dict[str, Any] = {}
    for key, value in raw.items():
        name = canonical_name(key) if isinstance(key, str) else key
        if name not in _FEATURE_SET:
            errors.append(FieldError(str(key), UNEXPECTED, index))
        elif name in record:
            errors.append(FieldError(str(key), f"is given twice (as {name!r} too)", index))
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
        if from_form and isinstance(feature, NumericFeature) and isinstance(value, str):
            value = _parse_number(value)
            record[feature.name] = value
        message = feature.check(value)
        if message is not None:
            errors.append(FieldError(feature.name, message, index))
    if errors:
        return None, errors
    return record, []


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


def _parse_number(text: str) -> Any:
    try:
        return float(text.strip())
    except ValueError:
        return text


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


def validate_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a training table into valid rows (typed, schema columns only) and rejected rows with a reason.

    ``frame`` holds raw text as read from a CSV. Each rejected row keeps its original values, its 1-based
    line number in the data (header excluded) and every rule it broke.
    """
    frame = normalise_headers(frame)
    reasons = pd.Series([""] * len(frame), index=frame.index, dtype=object)
    clean = pd.DataFrame(index=frame.index)

    def add_reason(mask: pd.Series, text: str) -> None:
        reasons.loc[mask] = reasons.loc[mask] + np.where(reasons.loc[mask] == "", "", "; ") + text

    for feature in CATEGORICAL_FEATURES:
        column = frame[feature.name]
        missing = column.isna() | (column.astype(str).str.strip() == "")
        bad = ~missing & ~column.isin(feature.categories)
        add_reason(missing, f"{feature.name}: {REQUIRED}")
        add_reason(bad, f"{feature.name}: {feature.rule}")
        clean[feature.name] = column
    for feature in NUMERIC_FEATURES + (TARGET,):
        column = frame[feature.name]
        missing = column.isna() | (column.astype(str).str.strip() == "")
        numbers = pd.to_numeric(column, errors="coerce")
        bad = ~missing & ~(numbers.between(feature.minimum, feature.maximum) & np.isfinite(numbers))
        add_reason(missing, f"{feature.name}: {REQUIRED}")
        add_reason(bad, f"{feature.name}: {feature.rule}")
        clean[feature.name] = numbers.astype(float)

    rejected_mask = reasons != ""
    rejected = frame.loc[rejected_mask].copy()
    rejected.insert(0, "line", (np.flatnonzero(rejected_mask.to_numpy()) + 1).astype(int))
    rejected["reason"] = reasons.loc[rejected_mask]
    valid = clean.loc[~rejected_mask].reset_index(drop=True)
    for feature in CATEGORICAL_FEATURES:
        valid[feature.name] = valid[feature.name].astype(str)
    return valid, rejected.reset_index(drop=True)


STUDENT_ID = "student_id"


def normalise_student_headers(frame: pd.DataFrame, passthrough: Sequence[str] = (STUDENT_ID,)) -> pd.DataFrame:
    """Rename headers of either style to the schema's names for a file of students to predict (no target).

    Refuses, naming them, columns given twice, missing features, and columns that are neither a feature nor a
    pass-through column (``student_id``): the JSON API refuses unexpected fields too.
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


def check_students_frame(frame: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame, pd.DataFrame]:
    """Check a table of students to predict (raw text from a CSV, or typed values) against the schema, vectorised.

    ``frame`` has the schema's column names. Returns ``(ok, students, errors)``: a boolean mask of the valid
    rows; those rows as typed students (categories as text, scores as floats), in order; and one row per broken
    rule (``position`` in ``frame``, ``field``, ``value`` as given, ``reason``), by position then schema order.
    The rules and messages are those of the JSON API; nothing is fixed or guessed.
    """
    positions = np.arange(len(frame))
    parts: list[pd.DataFrame] = []
    ok = np.ones(len(frame), dtype=bool)
    students = pd.DataFrame(index=frame.index)

    def broken(mask: np.ndarray, name: str, reason: str) -> None:
        if mask.any():
            parts.append(pd.DataFrame({"position": positions[mask], "field": name,
                                       "value": frame[name].to_numpy(dtype=object)[mask], "reason": reason}))
            ok[mask] = False

    for feature in FEATURES:
        column = frame[feature.name]
        missing = (column.isna() | (column.astype(str).str.strip() == "")).to_numpy()
        if isinstance(feature, NumericFeature):
            numbers = pd.to_numeric(column, errors="coerce").astype(float)
            allowed = (numbers.between(feature.minimum, feature.maximum) & np.isfinite(numbers)).to_numpy()
            students[feature.name] = numbers
        else:
            allowed = column.isin(feature.categories).to_numpy()
            students[feature.name] = column.astype(object)
        broken(missing, feature.name, REQUIRED)
        broken(~missing & ~allowed, feature.name, feature.rule)
    columns = ["position", "field", "value", "reason"]
    if parts:
        order = {name: i for i, name in enumerate(FEATURE_NAMES)}
        errors = pd.concat(parts, ignore_index=True)
        errors = errors.assign(_order=errors["field"].map(order)).sort_values(["position", "_order"], kind="stable")
        errors = errors[columns].reset_index(drop=True)
    else:
        errors = pd.DataFrame({c: pd.Series(dtype=object if c != "position" else np.int64) for c in columns})
    mask = pd.Series(ok, index=frame.index)
    return mask, students.loc[ok].reset_index(drop=True), errors

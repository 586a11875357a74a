"""The single source of truth for the model's inputs and target.

Every other module reads the feature names, their order, the allowed categories, the numeric ranges and the
header aliases of the public download from here; nothing else spells them out.

How text is matched to the schema, the same in every channel that carries text (the teachers' form, class lists,
the batch command's files on either engine, and training files):

- a header is matched ignoring the case of its letters and surrounding spaces, in either style (``Reading Score`` is
  ``reading_score``): ``canonical_name``;
- a category is matched ignoring case and surrounding spaces and kept in the schema's spelling (``" Female "``
  is ``female``, ``" group b "`` is ``group B``): ``canonical_category``; any other text is refused with the rule;
- a number is plain decimal text (an optional sign, digits, a point, an exponent: ``72``, ``+72``, ``.5``,
  ``7.2e1``), surrounding spaces ignored; a decimal comma (``7,5``) is refused with a message of its own
  (a class list's semicolon or tab file, whose dialect writes decimals so, has them read as points first):
  ``NUMBER_PATTERN``.

The JSON API is typed, not text: it takes the schema's names (or the public download's headers) and categories
exactly as written here, and numbers as JSON numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class SchemaError(ValueError):
    """Data does not match the schema (missing column, wrong type, value out of range)."""


@dataclass(frozen=True)
class CategoricalFeature:
    """A feature whose value must be one of a fixed set of strings."""

    name: str
    label: str
    categories: tuple[str, ...]
    hint: str = ""  # one plain sentence for the teachers' form
    actionable: bool = False  # the school's own record (scores, its course); else background a teacher may not know

    @property
    def rule(self) -> str:
        return "must be one of: " + ", ".join(self.categories)

    @property
    def may_be_unknown(self) -> bool:
        """Background a teacher may not know: the form offers "not known" (see src.answers.unknowns)."""
        return not self.actionable

    def check(self, value: Any) -> str | None:
        """Return the error message for ``value``, or None when it is allowed."""
        if isinstance(value, str) and value in self.categories:
            return None
        return self.rule

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": "categorical", "categories": list(self.categories)}


@dataclass(frozen=True)
class NumericFeature:
    """A feature whose value must be a finite number within [minimum, maximum]."""

    name: str
    label: str
    minimum: float
    maximum: float
    hint: str = ""
    actionable: bool = False

    @property
    def rule(self) -> str:
        return f"must be a number between {self.minimum:g} and {self.maximum:g}"

    def check(self, value: Any) -> str | None:
        """Return the error message for ``value``, or None when it is allowed.

        Booleans and strings are refused: a JSON ``"72"`` or ``true`` is a client bug, not a score.
        """
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return self.rule
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an integer too large for a float (JSON allows any number of digits)
            return self.rule
        if not finite or not self.minimum <= value <= self.maximum:
            return self.rule
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": "numeric", "minimum": self.minimum, "maximum": self.maximum}


Feature = CategoricalFeature | NumericFeature

FEATURES: tuple[Feature, ...] = (
    CategoricalFeature("gender", "Gender", ("female", "male"), hint="As recorded by the school."),
    CategoricalFeature(
        "race_ethnicity",
        "Race/ethnicity group",
        ("group A", "group B", "group C", "group D", "group E"),
        hint="The data the model learned from labels students only as group A to E and never says who is in which "
        "group, so your school's records may not match these groups.",
    ),
    CategoricalFeature(
        "parental_level_of_education",
        "Parents' highest level of education",
        (
            "some high school",
            "high school",
            "some college",
            "associate's degree",
            "bachelor's degree",
            "master's degree",
        ),
        hint="The highest level either parent completed.",
    ),
    CategoricalFeature(
        "lunch",
        "Lunch",
        ("standard", "free/reduced"),
        hint='"free/reduced": the student gets free or reduced-price school lunch (a sign of family income).',
    ),
    CategoricalFeature(
        "test_preparation_course",
        "Test preparation course",
        ("none", "completed"),
        hint="Whether the student completed the school's test preparation course.",
        actionable=True,
    ),
    NumericFeature(
        "reading_score",
        "Reading score (0-100)",
        0.0,
        100.0,
        hint="The student's latest reading test score; decimals with a point, e.g. 72.5.",
        actionable=True,
    ),
    NumericFeature(
        "writing_score",
        "Writing score (0-100)",
        0.0,
        100.0,
        hint="The student's latest writing test score; decimals with a point, e.g. 72.5.",
        actionable=True,
    ),
)

TARGET = NumericFeature("math_score", "Math score (0-100)", 0.0, 100.0)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
CATEGORICAL_FEATURES: tuple[CategoricalFeature, ...] = tuple(f for f in FEATURES if isinstance(f, CategoricalFeature))
NUMERIC_FEATURES: tuple[NumericFeature, ...] = tuple(f for f in FEATURES if isinstance(f, NumericFeature))
FEATURES_BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}
# Background details (gender, group, lunch, parents' education), which a teacher may not know.
BACKGROUND_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if not f.actionable)
# What a prediction rests on: the student's own test scores. Every other input, the course included, is an
# association in past data given those scores, not an effect: exact in the API, never a teacher's reason to act.
EVIDENCE_FEATURES: tuple[str, ...] = tuple(f.name for f in NUMERIC_FEATURES)
ASSOCIATED_FEATURES: tuple[str, ...] = tuple(name for name in FEATURE_NAMES if name not in EVIDENCE_FEATURES)
# The form's choice for a background field the teacher does not know (never a category of the data).
NOT_KNOWN = "not known"
MAY_BE_UNKNOWN: tuple[str, ...] = tuple(f.name for f in CATEGORICAL_FEATURES if f.may_be_unknown)
# An optional column of class lists, passed through untouched so a teacher can match rows to students.
STUDENT_ID = "student_id"

# Headers as the public "Students Performance in Exams" download spells them.
HEADER_ALIASES: dict[str, str] = {
    "race/ethnicity": "race_ethnicity",
    "parental level of education": "parental_level_of_education",
    "test preparation course": "test_preparation_course",
    "math score": "math_score",
    "reading score": "reading_score",
    "writing score": "writing_score",
}

COLUMNS: tuple[str, ...] = FEATURE_NAMES + (TARGET.name,)
# A class list, a JSON batch or a batch file may carry each student's real math score (the target, under either
# header style; blank when not known yet), to check the model against it. It is never an input of the model, and
# answers give it back under its own name, beside the prediction (``math_score``), never in its place.
REAL_SCORE_KEYS: tuple[str, ...] = (TARGET.name, *(a for a, n in HEADER_ALIASES.items() if n == TARGET.name))
REAL_SCORE = "real_math_score"


# A number written as text: ASCII digits, an optional sign, point and exponent. Python's float() also reads "7_5" as
# 75 and full-width digits; both are refused rather than read as something else.
NUMBER_PATTERN = r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?"
# A decimal written with a comma ("7,5"): refused with its own message, never read as 75 or 7.5.
DECIMAL_COMMA_PATTERN = r"[+-]?[0-9]*,[0-9]+"

_HEADERS: dict[str, str] = {**{name: name for name in (*COLUMNS, STUDENT_ID)}, **HEADER_ALIASES}
_SPELLINGS: dict[str, dict[str, str]] = {
    f.name: {c.lower(): c for c in f.categories} for f in FEATURES if isinstance(f, CategoricalFeature)
}


def folded(text: str) -> str:
    """Text as the rules compare it: surrounding white space (``str.strip``) removed, ASCII letters in lower case.

    Only ASCII letters are folded: every name and category is ASCII, and Unicode's case rules would match more
    (``"ſ"``, the long s, folds to ``s``) than a pattern of the OpenAPI document can say."""
    stripped = text.strip()
    return stripped.lower() if stripped.isascii() else stripped


def canonical_name(header: str) -> str:
    """A header of either style, in any case and with surrounding spaces, as the schema's snake_case name
    (``" Reading Score"`` is ``reading_score``); a header that names no column passes through unchanged."""
    return _HEADERS.get(folded(header), header)


def _any_case(text: str) -> str:
    """``text`` as a regular expression (ECMA-262 and Python alike) matching it with its ASCII letters in any case."""
    out = []
    for char in text:
        if char.isascii() and char.isalpha():
            out.append(f"[{char.upper()}{char.lower()}]")
        elif char in ".^$*+?()[]{}|\\":
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def text_pattern(feature: Feature, *, not_known: bool = False) -> str:
    """The whole-text pattern of what the text rules accept for ``feature``, for the OpenAPI document's form
    fields: a number's plain text (its range is the feature's rule, checked after), or a category in any case;
    with ``not_known``, also the form's exact ``NOT_KNOWN``. Surrounding white space (``\\s``) is allowed."""
    if isinstance(feature, NumericFeature):
        return rf"^\s*{NUMBER_PATTERN}\s*$"
    choices = "|".join(_any_case(c) for c in feature.categories)
    if not_known:
        return rf"^(?:\s*(?:{choices})\s*|{NOT_KNOWN})$"
    return rf"^\s*(?:{choices})\s*$"


def canonical_category(name: str, text: str) -> str:
    """A category of feature ``name`` as a spreadsheet or a person may type it (any case, surrounding spaces) in
    the schema's spelling; text that matches no category comes back unchanged, to be refused with the rule."""
    return _SPELLINGS[name].get(folded(text), text)


def describe() -> dict[str, Any]:
    """A JSON-ready description of the schema, recorded in every artifact manifest."""
    return {"features": [f.describe() for f in FEATURES], "target": TARGET.describe()}

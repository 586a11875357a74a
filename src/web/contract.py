"""The API's request and answer models (pydantic), derived from src/schema.py; /openapi.json is made from them.

- Requests: ``Student`` (strict, as JSON is typed: the schema's categories exactly, numbers as JSON numbers),
  ``LabeledStudent`` and ``Batch``; ``Form`` and ``FormUpload`` (lenient, as form fields are text: each field
  a string of the pattern ``src.schema.text_pattern`` derives from the text rules); the class list's text.
- Answers: ``SinglePrediction``, ``BatchPrediction`` (its items ``Prediction``, made from ``ANSWER_FIELDS``, the
  one table of answer fields in src/answers/columns.py, or ``RowError``), the
  ``Evaluation`` of real scores, ``ModelCard`` (/model.json), ``Ready``, ``Error`` and ``ValidationFailed``.

Every feature comes from ``FEATURES``: a feature added to the schema is a field of each model. Answer objects
allow properties they do not list (``extra="allow"``): a key added to an answer never breaks a client generated
from an older document. Open sets of words (band names, ``band_without_background``, error codes) are strings
whose known values the description lists, never enums a new value would break.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from src.answers.bands import BAND_NAMES, BAND_POLICIES
from src.answers.columns import (
    ANSWER_FIELDS,
    BAND,
    BASELINE,
    BELOW_CUT,
    LEVEL,
    MATH_SCORE,
    MODEL_VERSION,
    UNCLIPPED,
    WITHOUT_BACKGROUND,
)
from src.answers.evaluation import AT_OR_ABOVE, BELOW
from src.schema import (
    FEATURES,
    HEADER_ALIASES,
    NOT_KNOWN,
    STUDENT_ID,
    TARGET,
    CategoricalFeature,
    Feature,
    NumericFeature,
    text_pattern,
)
from src.validation import MAX_DETAILS, MAX_FIELD_CHARS

STRICT = ConfigDict(strict=True, extra="forbid")
TEXT = ConfigDict(extra="forbid")
ANSWER = ConfigDict(extra="allow")


def _words(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"`{v}`" for v in values)


def _never_null(schema: dict[str, Any]) -> None:
    """A key that is left out rather than null: its schema without the ``null`` the default of None added."""
    schema.pop("default", None)
    options = [o for o in schema.pop("anyOf", []) if o != {"type": "null"}]
    if len(options) == 1:
        schema.update(options[0])
    elif options:
        schema["anyOf"] = options


def absent(description: str, **rules: Any) -> Any:
    """A key an answer leaves out when it has no value (never null)."""
    return Field(default=None, description=description, json_schema_extra=_never_null, **rules)


BAND_WORDS = f"one of {_words(BAND_NAMES)} (a string, not an enum: a client keeps working if a band is added)"


# --- requests ---------------------------------------------------------------------------------------------------


def _json_field(feature: Feature) -> tuple[Any, Any]:
    """One feature as JSON sends it: one of its categories exactly, or a number within its range."""
    if isinstance(feature, CategoricalFeature):
        return (Literal[feature.categories], Field(description=feature.label))  # type: ignore[valid-type]
    return (float, Field(ge=feature.minimum, le=feature.maximum, description=feature.label))


def _text_field(feature: Feature, *, required: bool) -> tuple[Any, Any]:
    """One feature as a form sends it: text of the rules' pattern (``src.schema.text_pattern``)."""
    not_known = isinstance(feature, CategoricalFeature) and feature.may_be_unknown
    if isinstance(feature, CategoricalFeature):
        words = f"{feature.label}: one of {_words(feature.categories)}, in any case, surrounding spaces ignored"
        if not_known:
            words += f'; "{NOT_KNOWN}" when the teacher does not know it'
    else:
        words = (
            f"{feature.label}: a number from {feature.minimum:g} to {feature.maximum:g} as plain decimal text "
            "(`72`, `+72`, `.5`, `7.2e1`; a decimal comma is refused)"
        )
    field = Field(pattern=text_pattern(feature, not_known=not_known), description=words)
    return (str, field) if required else (str | None, field)


_ALIASES = _words([alias for alias, name in HEADER_ALIASES.items() if name != TARGET.name])

Student = create_model(  # type: ignore[call-overload]
    "Student",
    __config__=STRICT,
    __doc__=f"One student as JSON. The public download's headers ({_ALIASES}) are accepted in place of the "
    "schema's names; any other field is refused (422).",
    **{f.name: _json_field(f) for f in FEATURES},
)

LabeledStudent = create_model(  # type: ignore[call-overload]
    "LabeledStudent",
    __base__=Student,
    __doc__="A student of a batch, who may carry their real math score to check the answers against.",
    **{
        TARGET.name: (
            Annotated[float, Field(ge=TARGET.minimum, le=TARGET.maximum)]
            | Annotated[str, Field(pattern=r"^\s*$")]  # a blank cell, as spreadsheets and CSV exports write it
            | None,
            Field(
                default=None,
                description=f"the student's real {TARGET.label.lower()} when known (`math score` is accepted "
                "too; null or a blank text: not known yet); the answer then holds `real_math_score`, "
                "`prediction_minus_real`, `inside_range`, `band_right` per student and the batch's `evaluation`",
            ),
        )
    },
)


class Batch(BaseModel):
    """Many students: ``{"instances": [...]}``, at most MAX_BATCH of them."""

    model_config = STRICT
    instances: list[LabeledStudent] = Field(min_length=1)  # type: ignore[valid-type]


Form = create_model(  # type: ignore[call-overload]
    "Form",
    __config__=TEXT,
    __doc__="The teachers' form: the same fields, every value text, read by the text rules.",
    **{f.name: _text_field(f, required=True) for f in FEATURES},
)

FormUpload = create_model(  # type: ignore[call-overload]
    "FormUpload",
    __config__=TEXT,
    __doc__="The teachers' form as multipart: one student's fields, or a class list file (`class_list`) instead.",
    class_list=(
        bytes | None,
        Field(
            default=None,
            json_schema_extra={"format": "binary", "contentMediaType": "text/csv"},
            description="a class list file (as the text/csv body); the fields are then unused",
        ),
    ),
    **{f.name: _text_field(f, required=False) for f in FEATURES},
)


def example_class_list() -> str:
    """A valid class list of one student, built from the schema."""
    header = ",".join([STUDENT_ID, *(f.name for f in FEATURES)])
    row = ",".join(["S01", *("72" if isinstance(f, NumericFeature) else f.categories[0] for f in FEATURES)])
    return f"{header}\n{row}\n"


# Bytes of text (``format: binary``): generators then give the body a file type (a class list is a file).
CLASS_LIST_SCHEMA: dict[str, Any] = {
    "type": "string",
    "format": "binary",
    "contentMediaType": "text/csv",
    "description": "a class list: a header row (either header style, any case; an optional `student_id`, an "
    "optional `math score`), then one student per row, read by the text rules",
    "examples": [example_class_list()],
}


# --- answers ----------------------------------------------------------------------------------------------------


class Band(BaseModel):
    """What the 90 % range says about the cut score (SUPPORT_CUT)."""

    model_config = ANSWER
    name: str = Field(description=BAND_WORDS)
    label: str = Field(description="the band in plain words")
    cut: float = Field(description="the cut score the band is decided with")
    policy: str = Field(
        description="what decided the band and the chance below the cut (BAND_POLICY): one of "
        f"{_words(BAND_POLICIES)}; `all_details`, the prediction from every detail, `scores_only`, the prediction "
        "with the background details at their average (the scores and the course alone); a string, not an enum"
    )


# The JSON renderer's declarations for the fields of ANSWER_FIELDS (src/answers/columns.py), the one table of answer
# fields: the model of a JSON answer is made from that table, so a field added there is a typed field here.
# A field's JSON type follows its kind (``double``: a number, ``string``: text) unless ``JSON_TYPES`` names
# another (the band is written as its ``Band`` object); a field that needs a cut score or factors is left out
# when the answers lack it; a group all of whose fields are lacking (the factors) is null.
JSON_TYPES: dict[str, Any] = {BAND: Band}
DESCRIPTIONS: dict[str, str] = {
    MATH_SCORE: "the predicted math score",
    BELOW_CUT: "the chance that the real score is below the cut, from the same out-of-fold residuals as the 90 % "
    "range (absent for a model trained before they were recorded: `below_cut_reason`)",
    WITHOUT_BACKGROUND: "the band with the four background details at their training average; only for models "
    f"with exact factors; {BAND_WORDS}",
    BASELINE: "the mean prediction on the training split",
    UNCLIPPED: "baseline + the contributions: the score before it is kept within 0-100",
}
RULES: dict[str, dict[str, Any]] = {
    MATH_SCORE: {"ge": TARGET.minimum, "le": TARGET.maximum},
    BELOW_CUT: {"ge": 0, "le": 1},
    LEVEL: {"gt": 0, "le": 1},
}
# Each JSON group of the table: the model's name and what it is.
GROUPS: dict[tuple[str, ...], tuple[str, str]] = {
    ("interval",): ("Interval", "The 90 % range of the real score."),
    ("factors",): (
        "Factors",
        "The exact additive explanation: baseline + the contributions = unclipped_score (before 0-100 clipping).",
    ),
    ("factors", "contributions"): ("Contributions", "Each feature's additive contribution, in points, by schema name."),
}
# Given once per answer, not per student: the single answer's, never a batch item's.
PER_ANSWER = (MODEL_VERSION,)
# Fields that need a cut score but are in every JSON answer: the API always has one.
ALWAYS_IN_JSON = (BAND,)


def _json_fields(prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """The model fields of the table's JSON fields under ``prefix``, groups as models of their own, in order."""
    fields: dict[str, Any] = {}
    for field in ANSWER_FIELDS:
        path = field.json
        if path is None or path[: len(prefix)] != prefix or field.name in PER_ANSWER:
            continue
        key, *rest = path[len(prefix) :]
        if rest:
            if key not in fields:
                name, doc = GROUPS[(*prefix, key)]
                group = create_model(name, __config__=ANSWER, __doc__=doc, **_json_fields((*prefix, key)))
                inside = [f for f in ANSWER_FIELDS if f.json and f.json[: len(prefix) + 1] == (*prefix, key)]
                if any(f.needs is not None for f in inside) and not prefix:
                    fields[key] = (group | None, Field(description=f"null when the answers have no {key}"))
                else:
                    fields[key] = (group, ...)
            continue
        kind = JSON_TYPES.get(field.name, float if field.kind == "double" else str)
        description, rules = DESCRIPTIONS.get(field.name), RULES.get(field.name, {})
        if field.needs is None or prefix or field.name in ALWAYS_IN_JSON:
            fields[key] = (kind, Field(description=description, **rules))
        else:
            fields[key] = (kind | None, absent(description or "", **rules))
    return fields


Prediction = create_model(  # type: ignore[call-overload]
    "Prediction",
    __config__=ANSWER,
    __doc__="One student's answer (in a batch, one item): the fields of ANSWER_FIELDS with a JSON place, and what "
    "the answer says of the student besides.",
    student_id=(str | None, absent("a class list's `student_id`, passed through as given (class lists only)")),
    **_json_fields(),
    below_cut_reason=(str | None, absent("why the answer has no chance below the cut")),
    factors_reason=(str | None, absent("why the answer has no factors")),
    # a batch whose students carry real scores: each answer checked against its student's (null: none sent)
    real_math_score=(float | None, Field(default=None, description="the real score sent with the student")),
    prediction_minus_real=(float | None, Field(default=None, description="the reported score minus the real one")),
    inside_range=(bool | None, Field(default=None, description="whether the real score is inside the range")),
    band_right=(bool | None, Field(default=None, description="whether the band's claim held (null: it made none)")),
)

SinglePrediction = create_model(  # type: ignore[call-overload]
    "SinglePrediction",
    __base__=Prediction,
    __doc__="The answer for one student.",
    **{name: (str, ...) for name in PER_ANSWER},
)


class Detail(BaseModel):
    """One broken rule."""

    model_config = ANSWER
    index: int | None = absent(ge=0, description="the student's position, in JSON batches only")
    field: str = Field(max_length=MAX_FIELD_CHARS, description="the field's name as sent, or `row`, `file`")
    message: str = Field(description="the rule it breaks")


class RowError(BaseModel):
    """A class list's row that breaks a rule, in its place among the predictions."""

    model_config = ANSWER
    student_id: str | None = absent(description="the row's `student_id`, when the file has the column")
    row: int = Field(description="the row in the spreadsheet (the header is row 1)")
    error: str = Field(description="every broken rule in words, by the fields' labels on the form")
    details: list[Detail]


OutcomeCounts = create_model(  # type: ignore[call-overload]
    "OutcomeCounts",
    __config__=ANSWER,
    __doc__="How many students of a band scored below the cut, and how many at or above it.",
    **{BELOW: (int, Field(ge=0)), AT_OR_ABOVE: (int, Field(ge=0))},
)


BAND_TABLE = f"by band name ({BAND_WORDS})"


class TestSplitFigures(BaseModel):
    """What the model promised on its test split."""

    model_config = ANSWER
    students: int | None
    mae: float | None
    bias: float | None
    coverage: float | None
    level: float | None
    bands: dict[str, OutcomeCounts] | None  # type: ignore[valid-type] = Field(description=BAND_TABLE + "; null without a table for the cut")
    band_right: float | None


class Evaluation(BaseModel):
    """A batch's or class's answers against the real scores sent with its students."""

    model_config = ANSWER
    students: int = Field(ge=0, description="students with a real score")
    mae: float | None
    bias: float | None = Field(description="mean prediction minus real score")
    inside_range: int = Field(ge=0)
    coverage: float | None
    below_cut: int = Field(ge=0)
    bands: dict[str, OutcomeCounts] = Field(  # type: ignore[valid-type]
        description=BAND_TABLE
    )
    band_right: float | None = Field(description="of the bands that made a claim, the share that held")
    coverage_low: bool | None = Field(default=None, description="the range held clearly less often than promised")
    cut: float | None
    test_split: TestSplitFigures


class BatchPrediction(BaseModel):
    """The answer for many students (a JSON batch or a class list), in order."""

    model_config = ANSWER
    predictions: list[Prediction | RowError]
    model_version: str
    factors_reason: str | None = absent(description="why the answers have no factors")
    evaluation: Evaluation | None = absent(description="when students carried real scores")
    warnings: list[str] | None = absent(description="a class list's columns left unread, in words")


class Error(BaseModel):
    """Every error answer: a code to branch on and a message for people."""

    model_config = ANSWER
    error: str = Field(description="a code (a string, not an enum: codes may be added)")
    message: str | None = absent("what went wrong, for people")


class ValidationFailed(BaseModel):
    """422: fields that break the schema's rules."""

    model_config = ANSWER
    error: str = Field(description="`validation_failed`")
    message: str | None = absent("what went wrong, for people")
    details: list[Detail] = Field(max_length=MAX_DETAILS, description=f"the first {MAX_DETAILS} broken rules")
    more_details: int | None = absent(ge=1, description="how many more were left out")


# --- /model.json, /ready -----------------------------------------------------------------------------------------


class DataSummary(BaseModel):
    model_config = ANSWER
    source: str
    fingerprint: str | None
    rows_read: int | None
    rows_valid: int | None
    rows_rejected: int | None
    test_size: float | None
    seed: int | None


class WorstGroup(BaseModel):
    model_config = ANSWER
    feature: str
    group: str
    mae: float
    count: int


class Calibration(BaseModel):
    """Brier score and expected calibration error of a chance below the cut."""

    model_config = ANSWER
    brier: float
    ece: float


class BelowCutReport(BaseModel):
    """The chance below the cut on the test split, against a logistic baseline."""

    model_config = ANSWER
    cut: float
    test_rows: int
    share_below: float
    bins: int
    method: str
    model: Calibration
    baseline_method: str
    baseline: Calibration | None


class Summary(BaseModel):
    """What a head of year asks first."""

    model_config = ANSWER
    test_rows: int | None
    mae: float
    coverage: float
    level: float
    half_width: float
    worst_group: WorstGroup | None
    below_cut: BelowCutReport | None


class TestMetrics(BaseModel):
    model_config = ANSWER
    mae: float
    rmse: float
    r2: float
    bias: float
    interval_coverage: float
    interval_width: float


class CvMetrics(BaseModel):
    model_config = ANSWER
    folds: int | None = None
    r2_mean: float | None = None
    r2_std: float | None = None


class Metrics(BaseModel):
    model_config = ANSWER
    test: TestMetrics
    cv: CvMetrics
    below_cut: BelowCutReport | None


class IntervalMethod(BaseModel):
    model_config = ANSWER
    half_width: float
    level: float
    method: str


class GroupFigures(BaseModel):
    """A group's test-split figures."""

    model_config = ANSWER
    count: int
    mae: float | None
    bias: float | None
    coverage: float | None
    small: bool


class DriftSummary(BaseModel):
    """The drift status: when ``available``, whether drift is detected in the recent students."""

    model_config = ANSWER
    available: bool
    reason: str | None = None
    drift_detected: bool | None = None
    enough_data: bool | None = None
    window_size: int | None = None
    min_samples: int | None = None
    threshold: float | None = None
    drifted_features: list[str] | None = None


class HistoryEntry(BaseModel):
    model_config = ANSWER
    version: str
    decision: str
    reason: str
    at: str


class CardText(BaseModel):
    model_config = ANSWER
    intended_use: str
    limitations: list[str]
    evidence_and_association: str


class RealizedFigures(BaseModel):
    model_config = ANSWER
    students: int
    mae: float | None
    coverage: float | None
    below_cut: int


class RealizedTestSplit(BaseModel):
    model_config = ANSWER
    mae: float | None
    coverage: float | None


class Realized(RealizedFigures):
    """The real scores received in production, summed across the service."""

    available: bool
    groups: dict[str, dict[str, RealizedFigures]] = Field(description="by feature, then by category")
    test_split: RealizedTestSplit
    coverage_low: bool
    rule: str


class PolicyCounts(BaseModel):
    """Under one band policy: students flagged "needs support", and those really below the cut put "on track"."""

    model_config = ANSWER
    flagged: int = Field(ge=0)
    missed: int = Field(ge=0)


PolicyFigures = create_model(  # type: ignore[call-overload]
    "PolicyFigures",
    __config__=ANSWER,
    __doc__="Held-out students of a group, those really below the cut, and each band policy's counts (null: the "
    "policy needs exact factors the model lacks).",
    students=(int, Field(ge=0)),
    below_cut=(int, Field(ge=0)),
    **{policy: (PolicyCounts | None, ...) for policy in BAND_POLICIES},
)


class BandPolicies(BaseModel):
    """The test split under each band policy, for everyone and per student group."""

    model_config = ANSWER
    cut: float
    all: PolicyFigures  # type: ignore[valid-type]
    groups: dict[str, dict[str, PolicyFigures]] = Field(description="by feature, then by category")  # type: ignore[valid-type]


class WhoseFigures(BaseModel):
    """Whose drift and real-score figures the page shows: this instance since it started, or the whole fleet."""

    model_config = ANSWER
    scope: str = Field(
        description='"instance" (this instance since it started) or "fleet" (every instance, from Prometheus)'
    )
    realized: str = Field(description="the sentence shown above the real-score figures")
    drift: str = Field(description="the sentence shown above the drift figures")


class ModelCard(BaseModel):
    """/model.json: the model page's content."""

    model_config = ANSWER
    model_version: str
    model: str
    created_at: str | None
    scorer: str
    data: DataSummary
    summary: Summary
    metrics: Metrics
    interval: IntervalMethod
    groups: dict[str, dict[str, GroupFigures]] = Field(description="by feature, then by category")
    small_group_rows: int
    plots: list[str]
    features_used: list[str]
    excluded_features: list[str]
    drift: DriftSummary
    history: list[HistoryEntry]
    card: CardText
    realized: Realized | None
    band_policies: BandPolicies | None = Field(description="null for a model trained before they were recorded")
    figures: WhoseFigures


class FactorsStatus(BaseModel):
    model_config = ANSWER
    available: bool
    method: str | None = None
    baseline: float | None = None
    baseline_is: str | None = None
    reason: str | None = None


class Ready(BaseModel):
    """/ready: a verified model is loaded."""

    model_config = ANSWER
    status: Literal["ready"]
    model_version: str
    model: str | None = None
    source: str | None = Field(default=None, description="an S3 store's URI, or a local store's folder name")
    loaded_at: str | None = None
    scorer: str | None = None
    last_error: str | None = None
    worker: int | None = None
    factors: FactorsStatus | None = None


class Health(BaseModel):
    model_config = ANSWER
    status: Literal["ok"]


class Drift(BaseModel):
    """/drift: the drift report of the recent students."""

    model_config = ANSWER
    available: bool


REQUEST_MODELS: tuple[type[BaseModel], ...] = (Student, LabeledStudent, Batch, Form, FormUpload)
ANSWER_MODELS: tuple[type[BaseModel], ...] = (
    SinglePrediction,
    BatchPrediction,
    Prediction,
    RowError,
    Evaluation,
    ModelCard,
    Ready,
    Health,
    Drift,
    Error,
    ValidationFailed,
)

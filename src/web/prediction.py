"""The teachers' form and the JSON API, both at /predictdata."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

import numpy as np
from flask import (
    Blueprint,
    Response,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from werkzeug.datastructures import MultiDict

from src.answers.arrays import reported_scores
from src.answers.bands import ALL_DETAILS, UNCERTAIN, Bands
from src.answers.columns import BELOW_CUT, WITHOUT_BACKGROUND
from src.answers.evaluation import REAL_SCORE
from src.answers.factors import effect_words
from src.answers.model import PredictPipeline
from src.answers.unknowns import predict_with_unknowns, supports_unknowns
from src.schema import (
    ASSOCIATED_FEATURES,
    BACKGROUND_FEATURES,
    EVIDENCE_FEATURES,
    FEATURE_NAMES,
    FEATURES,
    FEATURES_BY_NAME,
    MAY_BE_UNKNOWN,
    NOT_KNOWN,
    TARGET,
    CategoricalFeature,
)
from src.validation import (
    GIVEN_TWICE,
    MAX_DETAILS,
    REAL_SCORE_KEYS,
    FieldError,
    StudentColumns,
    ValidationFailed,
    check_instances,
    duplicated_keys,
    error_details,
    has_real_score,
    parse_json,
    short_field,
    validate_labeled_students,
    validate_student,
    validate_students,
)
from src.web import roster
from src.web.answers import batch_answer, bulk_allocation, evaluate_batch, single_answer
from src.web.body_guard import request_body, scanned_json
from src.web.errors import fast_json_response, json_error, json_response
from src.web.outcomes import class_evaluation_words
from src.web.security import api_refused, trusted_sender
from src.web.services import Services, services
from src.web.wording import (
    BACKGROUND_NEXT_STEP,
    BAND_TITLES,
    POLICY_WORDS,
    band_sentence,
    chance_in_ten,
    chance_sentence,
    lean_words,
    points_change,
    range_ends,
    whole_points,
)

bp = Blueprint("prediction", __name__)

JSON_TYPE = "application/json"
# The form asks for the scores first (the evidence), then the course, then the background details.
FORM_ORDER = tuple(sorted(FEATURES, key=lambda f: (f.name not in EVIDENCE_FEATURES, not f.actionable)))
PREVIEW_ROWS = 200  # rows of an uploaded class shown on the page; the download has them all
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@bp.app_context_processor
def model_notice() -> dict[str, Any]:
    """Every page knows the served model, to say plainly when it never saw a real student."""
    pipeline = services().slot.pipeline
    return {"served": pipeline, "synthetic_model": pipeline is not None and pipeline.trained_on_synthetic}


@bp.get("/favicon.ico")
def favicon() -> Response:
    return send_from_directory(current_app.static_folder or "static", "favicon.svg", mimetype="image/svg+xml", max_age=86400)


def _bands(svc: Services | None = None) -> Bands:
    """The bands of the served model: around SUPPORT_CUT, decided as BAND_POLICY says when the model can set the
    background details aside (exact factors), else from every detail (the answer's band names the policy)."""
    svc = svc or services()
    config = svc.config
    pipeline = svc.slot.pipeline
    policy = config.band_policy if pipeline is not None and pipeline.factors.available else ALL_DETAILS
    return bands_for(config.support_cut, policy)


@functools.lru_cache(maxsize=8)
def bands_for(cut: float, policy: str = ALL_DETAILS) -> Bands:
    """The bands around ``cut`` decided by ``policy``, made once per cut and policy."""
    return Bands(cut, policy)


@bp.get("/")
def index() -> str:
    return render_template("index.html", pipeline=services().slot.pipeline)


@bp.get("/predictdata")
def form() -> Response:
    """The empty form; with a student's fields as query parameters, that student's result page.

    The result page's address holds the student's details (never a name): no other site is told it, and no
    shared cache keeps the page. Showing it predicts again but counts nothing: the submission was counted.
    """
    names_a_student = any(name in request.args for name in FEATURE_NAMES)  # not a stray ?utm_source=...
    response = make_response(_student_page(request.args) if names_a_student else _render_form({}, {}, None))
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/predictdata/class-list-template.csv")
def class_list_template() -> Response:
    """An empty class list as a spreadsheet opens it: the header row and one example student to overwrite."""
    return Response(
        "\ufeff" + roster.template_csv(),
        mimetype=roster.CSV_TYPE,
        headers={"Content-Disposition": 'attachment; filename="class-list-template.csv"'},
    )


@bp.post("/predictdata")
def predict() -> Response | tuple[str, int] | str:
    mimetype = request.mimetype
    if mimetype in (JSON_TYPE, roster.CSV_TYPE):  # the API: a token when API_TOKEN_SHA256 is set
        denied = api_refused()
        if denied is not None:
            return denied
        return _predict_json() if mimetype == JSON_TYPE else _predict_csv()
    if mimetype in FORM_TYPES:
        if "class_list" in request.files or request.form.get("upload") == "class_list":
            return _predict_class_list()
        return _predict_form()
    return json_error(
        415,
        "unsupported_media_type",
        f"send the student as {JSON_TYPE}, a class list as {roster.CSV_TYPE} (or use the form); "
        f"got {mimetype or 'no Content-Type'}",
    )


def _predict_json() -> Response:
    raw = request_body(request.environ, request.get_data)
    try:
        body = parse_json(raw, scanned_json(request.environ))
    except ValueError as err:  # UnicodeDecodeError is a ValueError too
        return json_error(400, "malformed_json", f"the body is not valid JSON: {err}")
    svc = services()
    if isinstance(body, dict) and "instances" in body:
        with bulk_allocation():
            return _predict_batch(body, raw)
    record, errors = validate_student(body)
    if errors:
        return _validation_failed(errors)
    pipeline = svc.slot.pipeline
    if pipeline is None:
        return json_error(503, "model_unavailable", svc.slot.error or "no model loaded")
    item, answers = single_answer(pipeline, record, _bands(svc))
    svc.predicted("json", (record,), np.array((item["math_score"],)))
    return fast_json_response(item)


def may_hold_real_scores(raw: bytes) -> bool:
    """False when no student of this JSON body can carry a real math score: the body is UTF-8 without any escape
    sequence (so a key is written as it reads) and no real score's key is in it. Spares a look at every student."""
    if json.detect_encoding(raw) != "utf-8" or b"\\" in raw:
        return True
    return any(f'"{key}"'.encode() in raw for key in REAL_SCORE_KEYS)


def _predict_batch(body: Mapping[str, Any], raw: bytes) -> Response:
    svc = services()
    instances = body["instances"]
    extra = [FieldError(short_field(k), "is not an accepted field beside instances") for k in body if k != "instances"]
    extra += [FieldError(short_field(k), GIVEN_TWICE) for k in duplicated_keys(body)]
    if extra:
        return _validation_failed(extra)
    if not isinstance(instances, list) or not instances:
        return _validation_failed([FieldError("instances", "must be a non-empty list of student objects")])
    if len(instances) > svc.config.max_batch:
        return json_error(
            413, "batch_too_large", f"at most {svc.config.max_batch} students per request, got {len(instances)}"
        )
    # column by column; None: a rule is broken, or a key is not the schema's (a real score's, say)
    students = check_instances(instances)
    labeled = students is None and may_hold_real_scores(raw) and any(map(has_real_score, instances))
    if students is None:
        try:
            if labeled:
                records, reals = validate_labeled_students(instances)
            else:
                records = validate_students(instances)
        except ValidationFailed as failed:
            return _validation_failed(failed.errors)
        students = StudentColumns.from_records(records)
    pipeline = svc.slot.pipeline
    if pipeline is None:
        return json_error(503, "model_unavailable", svc.slot.error or "no model loaded")
    bands = _bands()
    answer = batch_answer(pipeline, students, bands)
    svc.predicted("batch", students, reported_scores(answer.predictions.scores))
    payload: dict[str, Any] = {"predictions": answer.items, "model_version": pipeline.model_version}
    if not pipeline.factors.available:
        payload["factors_reason"] = pipeline.factors.reason
    if labeled:
        evaluated = evaluate_batch(pipeline, answer, reals, bands)
        if trusted_sender():  # the answer evaluates the batch all the same
            svc.labeled(students, evaluated.outcomes)
        payload["evaluation"] = evaluated.evaluation
    return fast_json_response(payload)


def _answer_roster(items_wanted: bool = True) -> roster.RosterAnswer | Response:
    """Parse and predict an uploaded class list (CSV API or the form's upload); a Response on a file error."""
    svc = services()
    if request.mimetype == roster.CSV_TYPE:
        data = request_body(request.environ, request.get_data)
    else:
        upload = request.files.get("class_list")
        data = upload.read() if upload is not None else b""
        if not data:
            return json_error(422, "validation_failed", "choose the class's file (CSV or Excel .xlsx) first")
    try:
        parsed = roster.parse_roster(data, svc.config.max_batch)
    except roster.RosterError as err:
        if err.details:
            svc.rejected(err.details)
            return json_response(
                {"error": err.code, "message": err.message, **error_details(err.details)}, status=err.status
            )
        return json_error(err.status, err.code, err.message)
    pipeline = svc.slot.pipeline
    if pipeline is None:
        return json_error(503, "model_unavailable", svc.slot.error or "no model loaded")
    answer = roster.answer_roster(pipeline, parsed, _bands(), items_wanted=items_wanted)
    failed = answer.failed
    if failed:
        svc.rejected([e for row in failed for e in row.errors])
    if answer.answers is not None:
        svc.predicted("batch", answer.answers.students, reported_scores(answer.answers.predictions.scores))
        if answer.evaluated is not None and trusted_sender():  # the page shows the class its evaluation anyway
            svc.labeled(answer.answers.students, answer.evaluated.outcomes)
    return answer


def _asked_dialect() -> roster.Dialect | None | Response:
    """The CSV answer's dialect asked with ``?dialect=comma|semicolon|tab``; None: the uploaded file's own."""
    name = request.args.get("dialect")
    if name is None or name == "":
        return None
    if name not in roster.DIALECTS:
        return _validation_failed([FieldError("dialect", "must be one of: " + ", ".join(roster.DIALECTS))])
    return roster.DIALECTS[name]


def _predict_csv() -> Response:
    as_csv = request.accept_mimetypes.best_match([JSON_TYPE, roster.CSV_TYPE]) == roster.CSV_TYPE
    dialect = _asked_dialect()
    if isinstance(dialect, Response):
        return dialect
    with bulk_allocation():
        answer = _answer_roster(items_wanted=not as_csv)
        if isinstance(answer, Response):
            return answer
        if as_csv:
            return Response(
                roster.roster_csv(answer, dialect),
                mimetype=roster.CSV_TYPE,
                headers={"Content-Disposition": 'attachment; filename="class-predictions.csv"'},
            )
        return fast_json_response(roster.roster_json(answer))


def _predict_class_list() -> tuple[str, int] | str:
    with bulk_allocation():
        return _class_list_page()


MAX_CLASS_NAME = 60


def _class_name() -> tuple[str, str | None]:
    """The optional class name of an upload, and the error when it is not usable (too long, control characters)."""
    name = " ".join(request.form.get("class_name", "").split())
    if len(name) > MAX_CLASS_NAME:
        return name, f"Class name: must be at most {MAX_CLASS_NAME} characters, got {len(name)}"
    if any(not char.isprintable() for char in name):
        return name, "Class name: must be plain text (no control characters)"
    return name, None


def _class_list_page() -> tuple[str, int] | str:
    class_name, name_error = _class_name()
    if name_error is not None:
        return _render_form({}, {}, None, roster_error=[name_error]), 422
    answer = _answer_roster()
    if isinstance(answer, Response):
        body = json.loads(answer.get_data())
        problems = [f"{d['field']}: {d['message']}" for d in body.get("details", [])] or [body["message"]]
        # A file that is not CSV text came in a well-formed form: the form is fine, its file cannot be used (422).
        status = 422 if answer.status_code == 400 else answer.status_code
        return _render_form({}, {}, None, roster_error=problems), status
    cut = services().config.support_cut
    bands = _bands()
    shown_roster = answer.roster
    order = answer.staff_order()
    rows = []
    for i in order[:PREVIEW_ROWS]:
        item = answer.items[i]
        failed = shown_roster.failed.get(i)
        student_id = shown_roster.ids[i] if shown_roster.ids is not None else None
        shown: dict[str, Any] = {
            "number": shown_roster.numbers[i],
            "student_id": student_id or "",
            "error": failed.error if failed is not None else "",
            "item": item,
        }
        if failed is None:
            band = item["band"]["name"]
            chance = item.get(BELOW_CUT)
            without = item.get(WITHOUT_BACKGROUND)
            shown.update(
                band=band,
                title=BAND_TITLES[band],
                lean=lean_words(chance, cut) if band == UNCERTAIN else "",
                predicted=item["math_score"],
                chance=chance,
                chance_words="" if chance is None else chance_in_ten(chance),
                score=whole_points(item["math_score"]),
                **dict(
                    zip(
                        ("low", "high"),
                        range_ends(item["interval"]["low"], item["interval"]["high"], cut, item.get(REAL_SCORE)),
                        strict=True,
                    )
                ),
                flip=BAND_TITLES[without] if without and without != band else None,
                reading=f"{float(shown_roster.cells['reading_score'][i]):g}",
                writing=f"{float(shown_roster.cells['writing_score'][i]):g}",
            )
        rows.append(shown)
    today = date.today()
    # the answer in the file's own dialect, and in the other a spreadsheet may need (a European one: semicolons)
    other_dialect = roster.DIALECTS["comma" if shown_roster.dialect.decimal == "," else "semicolon"]
    summary = {
        "rows": rows,
        "total": shown_roster.size,
        "failed": answer.failed,
        "counts": answer.band_counts(),
        "background_decided": answer.background_decided(),
        "policy": POLICY_WORDS[bands.policy],
        "scores_only": bands.scores_only,
        "has_ids": answer.roster.has_ids,
        "download": roster.csv_data_uri(roster.roster_csv(answer)),
        "download_words": shown_roster.dialect.words,
        "other_download": roster.csv_data_uri(roster.roster_csv(answer, other_dialect)),
        "other_download_words": other_dialect.words,
        "download_name": "-".join(
            part
            for part in ("class-predictions", re.sub(r"[^A-Za-z0-9]+", "-", class_name).strip("-")[:40], today.isoformat())
            if part
        )
        + ".csv",
        "class_name": class_name,
        "warnings": shown_roster.warnings,
        "date": f"{today:%d %B %Y}".lstrip("0"),
        "model_version": answer.model_version,
        "factors_reason": answer.factors_reason,
        "evaluation": class_evaluation_words(answer.evaluation) if answer.evaluation is not None else None,
        "chance_reason": answer.chance_reason,
    }
    return _render_form({}, {}, None, class_list=summary)


def _validation_failed(errors: list[FieldError]) -> Response:
    services().rejected(errors)
    return json_response({"error": "validation_failed", **error_details(errors)}, status=422)


def _predict_form() -> Response | tuple[str, int]:
    """A valid student is answered 303 See Other to the result page, so a reload never posts again."""
    checked, refusal = _answerable(request.form)
    if checked is None:
        return refusal  # type: ignore[return-value]
    svc = services()
    record, unknown, pipeline = checked
    # Counted here, once per submitted student: showing the result page again (a reload, a bookmark) is not
    # a new prediction and must not add the student to the drift window twice.
    if unknown:
        svc.counted("form", 1)
    else:
        item, _ = single_answer(pipeline, record, _bands())
        svc.predicted("form", (record,), np.array((item["math_score"],)))
    return redirect(url_for("prediction.form", **_query(record, unknown)), code=303)


def _student_page(fields: MultiDict[str, str]) -> tuple[str, int] | str:
    """The result page of the student the query names; the form with each field's error when it is not valid."""
    checked, refusal = _answerable(fields)
    if checked is None:
        return refusal  # type: ignore[return-value]
    record, unknown, pipeline = checked
    return _render_form(fields.to_dict(), {}, _result(pipeline, record, unknown))


def _answerable(
    fields: MultiDict[str, str],
) -> tuple[tuple[dict[str, Any], tuple[str, ...], PredictPipeline] | None, tuple[str, int] | None]:
    """The checked student, its fields not known and the model to answer it; else the page saying why not."""
    values, record, unknown, errors = _read_student(fields)
    if record is None:
        return None, _form_errors(values, errors)
    svc = services()
    pipeline = svc.slot.pipeline
    if pipeline is None:
        return None, (_render_form(values, {}, None, unavailable=svc.slot.error), 503)
    if unknown and not supports_unknowns(pipeline):
        return None, (_render_form(values, {}, None, unknown_unsupported=True), 409)
    return (record, unknown, pipeline), None


def _read_student(
    fields: MultiDict[str, str],
) -> tuple[dict[str, str], dict[str, Any] | None, tuple[str, ...], list[FieldError]]:
    """The fields as sent, the checked record (None if any field is wrong), the fields not known, the errors.

    A background field may be "not known" (``NOT_KNOWN``): it is left out of the record and named in the
    tuple. A field sent more than once is refused: which of its values was meant cannot be known.
    """
    values = fields.to_dict()
    unknown = tuple(name for name in MAY_BE_UNKNOWN if values.get(name) == NOT_KNOWN)
    # A not-known field is checked as if it held its first category (always valid), then left out.
    checked = {**values, **{name: _first_category(name) for name in unknown}}
    record, errors = validate_student(checked, from_form=True)
    errors += [FieldError(short_field(name), GIVEN_TWICE) for name, sent in fields.lists() if len(sent) > 1]
    if errors or record is None:
        return values, None, unknown, errors
    return values, {k: v for k, v in record.items() if k not in unknown}, unknown, errors


def _first_category(name: str) -> str:
    feature = FEATURES_BY_NAME[name]
    assert isinstance(feature, CategoricalFeature)
    return feature.categories[0]


def _form_errors(values: Mapping[str, str], errors: list[FieldError]) -> tuple[str, int]:
    services().rejected(errors)
    return _render_form(values, {e.field: e.message for e in errors[:MAX_DETAILS]}, None), 422


def _query(record: Mapping[str, Any], unknown: tuple[str, ...] = ()) -> dict[str, str]:
    """The student as query parameters, in schema order; numbers as the shortest text that reads back exactly."""
    return {name: NOT_KNOWN if name in unknown else _exact_text(record[name]) for name in FEATURE_NAMES}


def _exact_text(value: Any) -> str:
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def _result(pipeline: PredictPipeline, record: Mapping[str, Any], unknown: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the result page shows of one student's prediction; ``unknown`` names background fields not known
    (the record lacks them; see src.answers.unknowns)."""
    bands = _bands()
    config = services().config
    extra: dict[str, Any] = {}
    if unknown:
        counted = predict_with_unknowns(pipeline, record, unknown, bands)
        score, low, high = (round(v, 1) for v in (counted.score, counted.low, counted.high))
        points, chance, without = counted.contributions, counted.below_cut, counted.without_background
        extra = {
            "unknown": [FEATURES_BY_NAME[n].label.split(" (")[0] for n in counted.unknown],
            "possibilities": counted.possibilities,
        }
    else:
        answer, _ = single_answer(pipeline, record, bands)
        score, low, high = answer["math_score"], answer["interval"]["low"], answer["interval"]["high"]
        points = answer["factors"]["contributions"] if answer["factors"] is not None else None
        chance, without = answer.get(BELOW_CUT), answer.get(WITHOUT_BACKGROUND)
    band = counted.band if unknown else answer["band"]["name"]
    cut = bands.cut
    result: dict[str, Any] = {
        "math_score": score,
        "low": low,
        "high": high,
        "shown": {
            "score": whole_points(score),
            "low": whole_points(low, cut, "low"),
            "high": whole_points(high, cut, "high"),
        },
        "model_version": pipeline.model_version,
        "band": bands.payload(band),
        "band_title": BAND_TITLES[band],
        "band_sentence": band_sentence(band, cut),
        "lean": lean_words(chance, cut) if band == UNCERTAIN else "",
        "chance": None if chance is None else chance_sentence(chance, cut),
        "chance_reason": pipeline.below_cut.reason,
        "next_step": config.next_step(band),
        "half_width": pipeline.half_width,
        **extra,
    }
    result["policy"] = POLICY_WORDS[bands.policy]
    if without is not None and without != band:
        result["flip"] = BAND_TITLES[without]
        result["next_step"] = BACKGROUND_NEXT_STEP
    if points is not None:
        evidence = sorted(EVIDENCE_FEATURES, key=lambda n: -abs(points[n]))
        averages = pipeline.factors.averages  # type: ignore[union-attr]
        result["evidence"] = [
            {
                "name": n,
                "label": FEATURES_BY_NAME[n].label.split(" (")[0],
                "score": f"{float(record[n]):g}",
                "average": None if averages.get(n) is None else f"{round(averages[n]):d}",
                "effect": effect_words(points[n]),
            }
            for n in evidence
        ]
        entered = [n for n in ASSOCIATED_FEATURES if n not in unknown]  # a detail not known is averaged over
        result["associated"] = points_change(sum(points[n] for n in entered))
        result["associated_names"] = entered
        if bands.scores_only and without is not None:  # the range that decided: background at its average
            centred = sum(points.values()) + pipeline.factors.baseline - sum(points[n] for n in BACKGROUND_FEATURES)
            ends = [
                min(max(centred + d, TARGET.minimum), TARGET.maximum) for d in (-pipeline.half_width, pipeline.half_width)
            ]
            result["decided_range"] = (whole_points(ends[0], cut, "low"), whole_points(ends[1], cut, "high"))
        result["baseline"] = whole_points(pipeline.factors.baseline)
    else:
        result["factors_reason"] = pipeline.factors.reason
    result["student"] = [
        (
            FEATURES_BY_NAME[n].label.split(" (")[0],
            NOT_KNOWN if n in unknown else f"{record[n]:g}" if isinstance(record[n], float) else record[n],
        )
        for n in FEATURE_NAMES
    ]
    return result


def _render_form(
    values: Mapping[str, str],
    errors: Mapping[str, str],
    result: Mapping[str, Any] | None,
    unavailable: str | None = None,
    class_list: Mapping[str, Any] | None = None,
    roster_error: list[str] | None = None,
    unknown_unsupported: bool = False,
) -> str:
    pipeline = services().slot.pipeline
    offer_unknown = pipeline is None or supports_unknowns(pipeline)
    fields = [
        {
            "name": f.name,
            "label": f.label,
            "choices": f.categories if isinstance(f, CategoricalFeature) else None,
            "may_be_unknown": f.name in MAY_BE_UNKNOWN and offer_unknown,
            "value": values.get(f.name, ""),
            "error": errors.get(f.name),
            "hint": f.hint,
        }
        for f in FORM_ORDER
    ]
    other_errors = {k: v for k, v in errors.items() if k not in {f.name for f in FEATURES}}
    return render_template(
        "predict.html",
        fields=fields,
        other_errors=other_errors,
        result=result,
        unavailable=unavailable,
        class_list=class_list,
        roster_error=roster_error,
        cut=services().config.support_cut,
        max_batch=services().config.max_batch,
        errors=errors,
        not_known=NOT_KNOWN,
        unknown_unsupported=unknown_unsupported,
        offer_unknown=offer_unknown,
        band_titles=BAND_TITLES,
        next_step_link=services().config.next_step_link,
        next_step_link_text=services().config.next_step_link_text,
    )

"""A class's evaluation against its real scores, in the words of the class list page."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from src.answers.bands import NEEDS_SUPPORT, ON_TRACK, UNCERTAIN, Bands
from src.answers.evaluation import AT_OR_ABOVE, BELOW, FLAG_P_VALUE


def _points(value: float) -> str:
    return f"{value:.1f} point" + ("" if round(value, 1) == 1.0 else "s")


def _share(value: float | None) -> str:
    return "not recorded" if value is None else f"{value:.0%}"


def class_evaluation_words(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """Plain sentences (MAE, range, bias, bands, each beside the test split's), the band table, and a calm flag
    when the range held clearly less often than promised (``coverage_low``)."""
    n = int(evaluation["students"])
    test = evaluation["test_split"]
    cut = evaluation.get("cut")
    if n == 0:
        return {
            "students": 0,
            "sentences": [
                "No student in the file has a real math score yet: when the real scores "
                "arrive, put them in the math score column to see how the predictions "
                "did."
            ],
            "flag": None,
            "table": None,
        }
    inside = int(evaluation["inside_range"])
    students = "student" if n == 1 else "students"
    level = test.get("level") or 0.9
    sentences = [
        f"For your {n} {students} with a real score, the prediction was off by {_points(evaluation['mae'])} on "
        f"average"
        + (
            f" (on the test students when the model was made: {_points(test['mae'])})."
            if test.get("mae") is not None
            else "."
        ),
        f"{inside} of {n} real scores were within the range; the range is meant to hold about {level:.0%} of the "
        f"time" + (f" (on the test students: {_share(test.get('coverage'))})." if test.get("coverage") is not None else "."),
    ]
    bias = float(evaluation["bias"])
    if round(bias, 1) != 0.0:
        side = "above" if bias > 0 else "below"
        sentences.append(f"On average the predictions were {_points(abs(bias))} {side} the real scores.")
    table = None
    if cut is not None:
        bands = Bands(float(cut))
        counts = evaluation["bands"]
        promised = test.get("bands")
        table = [
            {
                "band": name,
                "label": bands.labels[name],
                "below": counts[name][BELOW],
                "at_or_above": counts[name][AT_OR_ABOVE],
                "test_below": promised[name][BELOW] if promised else None,
                "test_at_or_above": promised[name][AT_OR_ABOVE] if promised else None,
            }
            for name in (NEEDS_SUPPORT, UNCERTAIN, ON_TRACK)
        ]
        marked = [(NEEDS_SUPPORT, BELOW, f"below {cut:g}"), (ON_TRACK, AT_OR_ABOVE, f"{cut:g} or above")]
        said = [
            _marked(sum(counts[name].values()), counts[name][right], bands.labels[name], words)
            for name, right, words in marked
            if sum(counts[name].values())
        ]
        if said:
            joined = "; ".join(said)
            sentences.append(
                joined[0].upper()
                + joined[1:]
                + (
                    f" (on the test students, {_share(test.get('band_right'))} of such marks were right)."
                    if test.get("band_right") is not None
                    else "."
                )
            )
    flag = None
    if evaluation.get("coverage_low"):
        flag = (
            f"The range held less often for this class than it should: {inside} of {n} is clearly fewer than "
            f"{level:.0%} (a class this size would see so few less than {FLAG_P_VALUE:.0%} of the time if the "
            f"range held as promised). The model may fit these students less well than the students it "
            f"learned from: lean less on its ranges for this class, and tell the data team."
        )
    return {"students": n, "sentences": sentences, "flag": flag, "table": table}


def _marked(total: int, right: int, label: str, words: str) -> str:
    """'of the 12 students marked “very likely below 50”, 11 really were below 50' (one student: 'was')."""
    students = "student" if total == 1 else "students"
    verb = "was" if right == 1 else "were"
    return f"of the {total} {students} marked \u201c{label}\u201d, {right} really {verb} {words}"

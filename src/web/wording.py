"""The teachers' words for a prediction: band titles and sentences, the chance below the cut, whole points.

A teacher's page says the chance in words ("about 7 in 10 students like this one score below 50"), never as
a bare decimal, and shows scores in whole points: a range's ends outwards (never narrower than the range),
except where a whole number would sit on the other side of the cut from the band beside it (then one decimal).
"""

from __future__ import annotations

import math

from src.answers.bands import ALL_DETAILS, NEEDS_SUPPORT, ON_TRACK, SCORES_ONLY, UNCERTAIN

BAND_TITLES: dict[str, str] = {NEEDS_SUPPORT: "Needs support", UNCERTAIN: "Could be either side", ON_TRACK: "On track"}
# Which prediction decided the band and the chance (BAND_POLICY), said beside them on every page.
POLICY_WORDS: dict[str, str] = {
    ALL_DETAILS: "Band and chance decided from every detail entered, background details included (this school's setting).",
    SCORES_ONLY: "Band and chance decided from the reading and writing scores and the course alone: the background "
    "details are set aside (this school's setting).",
}
# The next step of a student whose band the background details decided: the scores alone would give another.
BACKGROUND_NEXT_STEP = (
    "The background details, not the scores, decided this band: look at this student's recent math work before "
    "deciding anything, as you would for a student who could be either side."
)


def band_sentence(band: str, cut: float) -> str:
    """The band as a whole sentence about the real score."""
    shown = f"{cut:g}"
    return {
        NEEDS_SUPPORT: f"The real math score is very likely below {shown}.",
        UNCERTAIN: f"The real math score could be either side of {shown}.",
        ON_TRACK: f"The real math score is very likely {shown} or above.",
    }[band]


def lean_words(probability: float | None, cut: float) -> str:
    """Which way a "could be either side" student leans, from the chance below the cut: 'leans below 50' (6 in
    10 or more), 'leans to 50 or above' (4 in 10 or less), else 'as likely below 50 as not'."""
    if probability is None:
        return ""
    if probability >= 0.6:
        return f"leans below {cut:g}"
    if probability <= 0.4:
        return f"leans to {cut:g} or above"
    return f"as likely below {cut:g} as not"


def chance_in_ten(probability: float) -> str:
    """The chance as "n in 10" (or "n in 100" near the ends), for a table cell."""
    if probability < 0.01:
        return "under 1 in 100"
    if probability > 0.99:
        return "over 99 in 100"
    if probability < 0.095 or probability > 0.905:
        return f"{round(probability * 100)} in 100"
    return f"{round(probability * 10)} in 10"


def chance_sentence(probability: float, cut: float) -> str:
    """'About 7 in 10 students like this one score below 50.'"""
    words = chance_in_ten(probability)
    if words.startswith(("under", "over")):
        return f"{words[0].upper()}{words[1:]} students like this one score below {cut:g}."
    return f"About {words} students like this one score below {cut:g}."


def whole_points(value: float, cut: float | None = None, end: str = "") -> str:
    """A score in whole points: the nearest, or for a range's ``end`` ("low"/"high") outwards; one decimal when
    the whole number would be on the other side of ``cut`` (a high end of 49.6 with a cut of 50 stays 49.6)."""
    whole = math.floor(value) if end == "low" else math.ceil(value) if end == "high" else round(value)
    if cut is not None and (value < cut) != (whole < cut):
        return f"{value:.1f}"
    return f"{whole:d}"


def range_ends(low: float, high: float, cut: float | None = None, real: float | None = None) -> tuple[str, str]:
    """A range's ends as a page prints them: whole points outwards (``whole_points``), except where a real score
    lies outside the range as the answer reports it (to one decimal: what "inside the range" is decided on) but
    within those whole points: then one decimal, so that the printed range never contradicts the verdict beside
    it ("64.7–84.0", real score 64: outside)."""
    shown = whole_points(low, cut, "low"), whole_points(high, cut, "high")
    if real is not None and not low <= real <= high and float(shown[0]) <= real <= float(shown[1]):
        return f"{low:.1f}", f"{high:.1f}"
    return shown


def points_change(points: float) -> str:
    """A change of the prediction in whole points: 'raise it by 3 points', never '-0.0'."""
    whole = round(points)
    if whole == 0:
        return "change it by less than half a point"
    unit = "point" if abs(whole) == 1 else "points"
    return f"{'raise' if whole > 0 else 'lower'} it by {abs(whole)} {unit}"

"""The teachers' pages as a head of year reads them, in headless Chromium against gunicorn on 127.0.0.1: the
evidence line's three numbers, the background notice before the next step, a filtered printout that says so,
/model's per-group flag and miss table, and WCAG 2.2 target size and AAA contrast by axe-core. Screenshots are
saved into the folder each test prints."""

from __future__ import annotations

import re

import pytest

from tests.conftest import unavailable
from tests.web.test_browser import (  # noqa: F401  (fixtures: gunicorn, screenshots, the browser)
    AXE,
    _browser,
    answered,
    browser,
    class_list,
    random_valid,
    served,
    shots,
    submit,
)

pytestmark = [pytest.mark.browser, pytest.mark.server]


def axe_rules(page, rules):
    """axe-core's violations of the named rules only (also those it leaves off by default, such as AAA contrast)."""
    if not AXE.is_file():
        unavailable(f"axe-core not installed at {AXE} (npm ci --prefix tests/web/axe; scripts/test.sh runs it)")
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("(rules) => axe.run(document, {runOnly: {type: 'rule', values: rules}})", rules)
    return [f"{v['id']}: {[n['target'] for n in v['nodes'][:5]]}" for v in result["violations"]]


def test_the_evidence_line_gives_the_score_the_average_and_the_effect(served, browser):  # noqa: F811
    page = browser.page
    student, answer = next((s, a) for s, a in answered(served) if s["writing_score"] < 50)
    submit(page, served, student)
    page.locator("#evidence").scroll_into_view_if_needed()
    path = browser.shot("evidence-line")
    print(f"evidence line: {path}")
    for name, label in (("reading_score", "Reading score"), ("writing_score", "Writing score")):
        line = " ".join(page.text_content(f"#evidence-{name}").split())
        points = round(answer["factors"]["contributions"][name])
        match = re.fullmatch(rf"{label} (\d+) \(average (\d+)\): (raises|lowers|changes) the prediction by (.+)", line)
        assert match, line
        assert int(match.group(1)) == student[name]
        if points:
            assert match.group(4) == f"{abs(points)} point{'s' if abs(points) != 1 else ''}"
            assert match.group(3) == ("raises" if points > 0 else "lowers")
        assert page.is_visible(f"#evidence-{name} .evidence-average")
    assert not browser.console_errors


def test_the_background_notice_stands_beside_the_band_before_the_next_step(served, browser):  # noqa: F811
    page = browser.page
    student, answer = next((s, a) for s, a in answered(served) if a["band_without_background"] != a["band"]["name"])
    submit(page, served, student)
    path = browser.shot("background-notice")
    print(f"background notice: {path}")
    band, flip, step = (page.locator(s).bounding_box() for s in ("#band", "#band-flip", "#next-step"))
    assert band["y"] < flip["y"] < step["y"]  # read in that order, top to bottom
    assert " ".join(page.text_content("#next-step-text").split()).startswith(
        "The background details, not the scores, decided this band"
    )
    assert "every detail entered" in page.text_content("#band-policy")
    assert "reason to act" not in page.text_content("#result")
    assert not browser.console_errors


def test_a_filtered_printout_says_so(served, browser, tmp_path):  # noqa: F811
    page = browser.page
    path = class_list(tmp_path, random_valid(29), bad_at={4})
    page.goto(f"{served}/predictdata")
    page.set_input_files("#class_list", str(path))
    page.fill("#class_name", "7B maths")
    page.click("button[value=class_list]")
    page.wait_for_selector("#class-controls:not([hidden])")
    assert page.text_content("#class-result-title") == "Class results, 7B maths: 30 students"
    page.uncheck("input[name=show][value=on_track]")
    page.uncheck("input[name=show][value=failed]")
    shown = page.locator("#preview tbody tr:not([hidden])").count()
    assert 0 < shown < 30
    page.emulate_media(media="print")
    shot = browser.shot("print-filtered")
    print(f"filtered printout: {shot}")
    assert page.text_content("#class-result-title") == f"Class results, 7B maths: {shown} of 30 students shown"
    assert page.is_visible("#print-note")
    assert page.text_content("#print-note") == (
        f"Filtered: {shown} of 30 students are printed (needs support, could be either side); the others are left out."
    )
    page.emulate_media(media="screen")
    assert not page.is_visible("#print-note")  # a printout's line, not the screen's
    assert not browser.console_errors


def test_the_model_page_shows_the_per_group_flag_and_miss_table(served, browser):  # noqa: F811
    page = browser.page
    page.goto(f"{served}/model")
    page.locator("#policies").scroll_into_view_if_needed()
    page.locator("#policies").screenshot(path=str(browser.shots / "model-policies.png"))
    print(f"/model per-group table: {browser.shots / 'model-policies.png'}")
    summary = " ".join(page.text_content("#policies-summary").split())
    assert re.match(r"Of the \d+ test students .* really scored below 50\. With bands from every detail", summary)
    headers = [h.strip() for h in page.locator("#policy-groups thead th").all_text_contents()]
    assert headers == [
        "Group",
        "Students",
        "Really below 50",
        "Flagged, every detail",
        "Missed, every detail",
        "Flagged, scores alone",
        "Missed, scores alone",
    ]
    assert page.locator("#policy-groups tbody tr[data-group]").count() == 2 + 5 + 6 + 2 + 2
    assert not browser.console_errors


def test_error_summary_links_meet_the_target_size_and_tinted_boxes_aaa_contrast(served, shots):  # noqa: F811
    for axe_browser in _browser(shots, bypass_csp=True):
        page = axe_browser.page
        pairs = answered(served)
        page.goto(f"{served}/predictdata")
        page.fill("#reading_score", "101")
        page.fill("#writing_score", "abc")
        page.click("button[type=submit]")
        page.wait_for_selector("#error-summary")
        axe_browser.shot("error-summary")
        heights = page.evaluate(
            "Array.from(document.querySelectorAll('#error-summary a')).map(a => a.getBoundingClientRect().height)"
        )
        assert heights and min(heights) >= 24, heights
        assert axe_rules(page, ["target-size"]) == []
        for band in ("needs_support", "uncertain", "on_track"):
            student = next(s for s, a in pairs if a["band"]["name"] == band)
            submit(page, served, student)
            axe_browser.shot(f"tinted-{band}")
            assert axe_rules(page, ["color-contrast-enhanced", "target-size"]) == [], band
        assert not axe_browser.console_errors

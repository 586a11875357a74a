"""axe-core on every page and state a teacher meets, at a desktop and a phone width, in headless Chromium against
gunicorn: any violation fails. Each state's screenshot is saved beside the browser tests' ones."""

from __future__ import annotations

import pytest
import requests

from src.schema import FEATURE_NAMES
from tests.web.test_browser import (  # noqa: F401  (fixtures: gunicorn, screenshots)
    _browser,
    answered,
    axe_violations,
    class_list,
    fill,
    random_valid,
    served,
    shots,
    submit,
)

WIDTHS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


def states(served, page, tmp_path):  # noqa: F811
    """Walk through every page and state; yield each state's name once the page shows it."""
    pairs = answered(served)
    page.goto(f"{served}/")
    yield "landing"
    page.goto(f"{served}/predictdata")
    yield "form"
    student, _ = pairs[0]
    page.goto(f"{served}/predictdata")
    fill(page, {**student, "writing_score": 140})
    page.click("button[type=submit]")
    page.wait_for_selector("#error-summary")
    yield "form-errors"
    for band in ("needs_support", "uncertain", "on_track"):
        student, _ = next((s, a) for s, a in pairs if a["band"]["name"] == band)
        submit(page, served, student)
        yield f"result-{band}"
    student, _ = next((s, a) for s, a in pairs if a["band_without_background"] != a["band"]["name"])
    submit(page, served, student)
    yield "result-band-flip"
    submit(page, served, {**pairs[1][0], "lunch": "not known", "gender": "not known"})
    yield "result-not-known"
    page.click("#change-entries summary")
    yield "result-entries-open"
    page.goto(f"{served}/predictdata")
    page.set_input_files("#class_list", str(class_list(tmp_path, random_valid(20), bad_at={3, 9})))
    page.click("button[value=class_list]")
    page.wait_for_selector("#class-controls:not([hidden])")
    yield "class"
    page.select_option("#sort-by", "id")
    page.uncheck("input[name=show][value=on_track]")
    yield "class-sorted-filtered"
    page.click("#class-result details.guide summary")
    yield "class-guide-open"
    page.emulate_media(media="print")
    yield "class-print"
    page.emulate_media(media="screen")
    labeled = tmp_path / "labeled.csv"
    rows = [(s, a) for s, a in pairs[:24]]
    lines = ["student_id," + ",".join(FEATURE_NAMES) + ",math score"]
    for i, (s, a) in enumerate(rows):
        real = "" if i == 3 else f"{a['math_score'] + (-12 if i % 5 == 0 else 2):.0f}"
        lines.append(",".join([f"S{i:02d}", *(str(s[n]) for n in FEATURE_NAMES), real]))
    labeled.write_text("\n".join(lines) + "\n")
    page.goto(f"{served}/predictdata")
    page.set_input_files("#class_list", str(labeled))
    page.click("button[value=class_list]")
    page.wait_for_selector("#class-evaluation")
    yield "class-with-real-scores"
    bad = tmp_path / "bad.csv"
    bad.write_text("name,score\nAda,70\n")
    page.goto(f"{served}/predictdata")
    page.set_input_files("#class_list", str(bad))
    page.click("button[value=class_list]")
    page.wait_for_selector("#class-error")
    yield "class-file-refused"
    page.goto(f"{served}/model")
    yield "model"
    page.goto(f"{served}/no-such-page")
    yield "not-found"


@pytest.mark.parametrize("width", list(WIDTHS))
def test_axe_finds_no_violation_on_any_page_or_state(served, shots, tmp_path, width):  # noqa: F811
    assert requests.get(f"{served}/ready", timeout=5).status_code == 200
    found: dict[str, list[str]] = {}
    seen = []
    for browser in _browser(shots, viewport=WIDTHS[width], bypass_csp=True):
        for state in states(served, browser.page, tmp_path):
            seen.append(state)
            browser.shot(f"{width}-{state}")
            violations = axe_violations(browser.page)
            if violations:
                found[state] = violations
        assert not browser.console_errors
    assert len(seen) == 17
    assert not found, "\n".join(f"{state}: {line}" for state, lines in found.items() for line in lines)


def test_the_check_reports_a_known_violation(served, shots):  # noqa: F811
    """The harness itself: a page with an image without alternative text and grey-on-white text fails."""
    for browser in _browser(shots, bypass_csp=True):
        browser.page.set_content(
            '<html lang="en"><body><main><img src="/favicon.ico"><p style="color:#bbb">faint</p></main></body></html>'
        )
        rules = {line.split(" ")[0] for line in axe_violations(browser.page)}
        assert {"image-alt", "color-contrast"} <= rules

"""A teacher's path through the pages, in headless Chromium against gunicorn on 127.0.0.1.

Every test saves screenshots into a folder it prints (under pytest's temporary folder; also copied into
``$SCREENSHOT_DIR`` when that is set, for a person to look at) and fails on any console error.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from datetime import date
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from src.schema import FEATURE_NAMES
from src.web.wording import chance_sentence, whole_points
from tests.conftest import PROJECT, unavailable
from tests.servers import listening_socket, start_gunicorn, stop, wait_for

# Debian's chromium; elsewhere (CodeBuild's Ubuntu image) CHROMIUM names the browser to use.
CHROMIUM = Path(os.environ.get("CHROMIUM") or "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
BAND_TITLES = {"needs_support": "Needs support", "uncertain": "Could be either side", "on_track": "On track"}


@pytest.fixture(scope="module")
def served(store_dir, trained, tmp_path_factory):
    """The app under gunicorn, one server for the tests of a module (each test has its own browser context)."""
    if not CHROMIUM.exists():
        unavailable(
            f"Chromium not installed at {CHROMIUM} (Debian package chromium, or set CHROMIUM; "
            ".ci/run and buildspec.yml install it)"
        )
    listener = listening_socket()
    port = listener.getsockname()[1]
    process, log = start_gunicorn(listener, store_dir, tmp_path_factory.mktemp("served"))
    try:
        wait_for(f"http://127.0.0.1:{port}/ready", process, log=log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


class Browser:
    """One page, the console errors it logged, and where its screenshots go."""

    def __init__(self, page, shots: Path) -> None:
        self.page = page
        self.shots = shots
        self.logged: list[tuple[str, str]] = []
        self.documents: set[str] = set()  # pages answered with a deliberate 4xx status (the form's 422, the 404)
        page.on("console", lambda m: self.logged.append((m.text, m.location.get("url", ""))) if m.type == "error" else None)
        page.on("pageerror", lambda err: self.logged.append((str(err), "")))
        page.on("response", lambda r: self.documents.add(r.url) if r.request.resource_type == "document" else None)

    @property
    def console_errors(self) -> list[str]:
        """Console errors, less Chromium's note on a page's own 4xx status (every other failed load counts)."""
        return [
            text
            for text, url in self.logged
            if not (text.startswith("Failed to load resource: the server responded") and url in self.documents)
        ]

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture()
def shots(tmp_path, request):
    folder = tmp_path / "screenshots"
    folder.mkdir()
    print(f"screenshots of {request.node.name}: {folder}")
    yield folder
    extra = os.environ.get("SCREENSHOT_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        for png in folder.glob("*.png"):
            shutil.copy(png, Path(extra) / f"{request.node.name}-{png.name}")


_SHARED: dict[str, object] = {}  # this test process's Playwright and Chromium, started at the first page


def shared_chromium():
    """One headless Chromium for every page this test process opens (a browser context each: nothing shared but
    the browser's processes); ``close_shared_chromium`` stops it at the end of the session."""
    browser = _SHARED.get("browser")
    if browser is not None and not browser.is_connected():  # it crashed: the next page gets a new one
        close_shared_chromium()
    if "browser" not in _SHARED:
        from playwright.sync_api import sync_playwright

        playwright = sync_playwright().start()
        try:
            _SHARED["browser"] = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        except BaseException:
            playwright.stop()
            raise
        _SHARED["playwright"] = playwright
    return _SHARED["browser"]


def close_shared_chromium() -> None:
    """Close the shared Chromium and stop Playwright's driver, if this process started them."""
    browser, playwright = _SHARED.pop("browser", None), _SHARED.pop("playwright", None)
    try:
        if browser is not None and browser.is_connected():
            browser.close()
    finally:
        if playwright is not None:
            playwright.stop()


def _browser(shots, viewport=None, *, bypass_csp=False, java_script_enabled=True):
    """One page in a new context of the shared headless Chromium; ``bypass_csp`` lets a test inject its own script
    (axe-core) into pages whose Content-Security-Policy forbids inline scripts, as it should."""
    context = shared_chromium().new_context(
        viewport=viewport, accept_downloads=True, bypass_csp=bypass_csp, java_script_enabled=java_script_enabled
    )
    try:
        context.set_default_timeout(15_000)
        yield Browser(context.new_page(), shots)
    finally:
        context.close()


@pytest.fixture()
def browser(shots):
    yield from _browser(shots)


@pytest.fixture()
def phone(shots):
    yield from _browser(shots, viewport={"width": 390, "height": 844})


def fill(page, student):
    for name, value in student.items():
        if isinstance(value, str):
            page.select_option(f"#{name}", value)
        else:
            page.fill(f"#{name}", str(value))


def class_list(tmp_path, valid, bad_at):
    """A CSV of len(valid) + len(bad_at) students with ids; the bad rows sit at the given 1-based positions."""
    rows, bad = (
        [],
        iter(
            [
                ["female", "group X", "high school", "standard", "none", "70", "140"],
                ["male", "group C", "", "standard", "none", "55", "60"],
                ["female", "group B", "some college", "standard", "none", "7,5", "60"],
            ]
        ),
    )
    students = iter(valid)
    for position in range(1, len(valid) + len(bad_at) + 1):
        rows.append(next(bad) if position in bad_at else [str(v) for v in next(students).values()])
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["student_id", *FEATURE_NAMES])
    for i, row in enumerate(rows, start=1):
        writer.writerow([f"7B-{i:02d}", *row])
    path = tmp_path / "class.csv"
    path.write_text(out.getvalue())
    return path


def random_valid(n):
    from src.answers.fast_path import random_students

    frame = random_students(n, seed=21)
    for name in ("reading_score", "writing_score"):
        frame[name] = frame[name].round().astype(int)
    return frame.to_dict("records")


def test_teacher_gets_band_range_and_reasons_as_the_api(served, browser, student):
    page = browser.page
    page.goto(f"{served}/")
    browser.shot("landing")
    page.click("text=Predict a student's math score")
    assert page.url.endswith("/predictdata")
    fill(page, student)
    page.click("button[type=submit]")
    page.wait_for_selector("#math-score")
    browser.shot("result")
    expected = requests.post(f"{served}/predictdata", json=student, timeout=5).json()
    assert page.text_content("#math-score") == whole_points(expected["math_score"])
    assert page.text_content("#interval-low") == whole_points(expected["interval"]["low"], 50, "low")
    assert page.text_content("#interval-high") == whole_points(expected["interval"]["high"], 50, "high")
    assert page.text_content("#band") == BAND_TITLES[expected["band"]["name"]]
    assert page.text_content("#chance") == chance_sentence(expected["below_cut_probability"], 50)
    assert "9 in 10 students like this one" in page.text_content("#range-explained")
    evidence = page.locator("#evidence li").all_text_contents()
    assert len(evidence) == 2 and all("(average " in r and " the prediction by " in r for r in evidence)
    assert page.is_visible("#associations") and page.is_visible("#synthetic-notice")
    assert page.evaluate("document.activeElement.id") == "result-title"
    assert page.input_value("#reading_score") == str(student["reading_score"])
    page.click("#next-student")
    page.wait_for_selector("form.student-form")
    assert page.query_selector("#result") is None and page.input_value("#reading_score") == ""
    assert not browser.console_errors


def test_errors_are_announced_and_linked_to_their_fields(served, browser, student):
    page = browser.page
    page.goto(f"{served}/predictdata")
    fill(page, {**student, "writing_score": 140})
    page.click("button[type=submit]")
    page.wait_for_selector("#writing_score-error")
    browser.shot("errors")
    assert page.title().startswith("Error:")
    assert page.get_attribute("#error-summary", "role") == "alert"
    assert page.evaluate("document.activeElement.id") == "error-summary"
    assert "must be a number between 0 and 100" in page.text_content("#writing_score-error")
    assert page.get_attribute("#writing_score", "aria-invalid") == "true"
    assert "writing_score-error" in page.get_attribute("#writing_score", "aria-describedby").split()
    assert page.get_attribute("#reading_score", "aria-invalid") is None
    assert page.input_value("#writing_score") == "140" and page.input_value("#gender") == student["gender"]
    assert page.query_selector("#math-score") is None
    page.click("#error-summary a[href='#writing_score']")
    assert page.evaluate("document.activeElement.id") == "writing_score"
    page.focus("#lunch")
    page.keyboard.press("Tab")  # keyboard only: from the last field to the button, with a visible focus ring
    assert page.evaluate("document.activeElement.type") == "submit"
    ring = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth]; })()"
    )
    assert ring == ["solid", "3px"]
    browser.shot("focus")
    assert not browser.console_errors


def test_a_score_typed_with_a_comma_is_refused_at_its_field(served, browser, student):
    page = browser.page
    page.goto(f"{served}/predictdata")
    fill(page, student)
    page.fill("#reading_score", "")
    page.click("#reading_score")
    page.keyboard.type("7,5")
    page.click("button[type=submit]")
    page.wait_for_selector("#reading_score-error")
    browser.shot("comma")
    assert "must be written with a point, not a comma: 7.5" in page.text_content("#reading_score-error")
    assert page.get_attribute("#reading_score", "aria-invalid") == "true"
    assert "reading_score-error" in page.get_attribute("#reading_score", "aria-describedby").split()
    assert page.get_attribute("#writing_score", "aria-invalid") is None
    assert page.input_value("#reading_score") == "7,5"  # what was typed, exactly, to be corrected
    assert page.query_selector("#result") is None and page.url == f"{served}/predictdata"
    assert not browser.console_errors


def test_the_result_has_its_own_address_and_a_reload_does_not_post_again(served, browser, student):
    page = browser.page
    documents: list[tuple[str, str]] = []
    page.on("request", lambda r: documents.append((r.method, r.url)) if r.resource_type == "document" else None)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{served}/predictdata")
    fill(page, student)
    page.click("button[type=submit]")
    page.wait_for_selector("#math-score")
    address = urlsplit(page.url)
    assert address.path == "/predictdata"
    assert dict(parse_qsl(address.query)) == {k: str(v) for k, v in student.items()}
    assert [method for method, _ in documents] == ["GET", "POST", "GET"] and documents[-1][1] == page.url
    shown = page.text_content("#result")
    browser.shot("result-address")
    documents.clear()
    page.reload()
    page.wait_for_selector("#math-score")
    browser.shot("result-reloaded")
    assert documents == [("GET", page.url)] and not dialogs
    assert page.text_content("#result") == shown
    bookmark = page.context.new_page()
    bookmark.goto(page.url)
    assert bookmark.text_content("#result") == shown
    assert not browser.console_errors


def test_a_teacher_who_does_not_know_a_background_detail_gets_a_wider_range(served, browser, student):
    page = browser.page
    page.goto(f"{served}/predictdata")
    fill(page, {**student, "parental_level_of_education": "not known"})
    page.keyboard.press("Enter")
    page.wait_for_selector("#math-score")
    browser.shot("not-known")
    assert page.text_content("#not-known") == "Parents' highest level of education"
    assert "6 possibilities" in page.text_content("#range-explained")
    low, high = (float(page.text_content(f"#interval-{end}")) for end in ("low", "high"))
    known = requests.post(f"{served}/predictdata", json=student, timeout=10).json()["interval"]
    assert low <= known["low"] and known["high"] <= high and high - low > known["high"] - known["low"]
    assert page.locator("#evidence li").count() == 2
    assert not browser.console_errors


def test_teacher_uploads_a_class_and_downloads_what_the_api_answers(served, browser, tmp_path):
    page = browser.page
    valid = random_valid(27)
    path = class_list(tmp_path, valid, bad_at={4, 17, 30})
    before = date.today()  # the page names the file by the day the class list was answered
    page.goto(f"{served}/predictdata")
    page.set_input_files("#class_list", str(path))
    page.click("button[value=class_list]")
    page.wait_for_selector("#class-result")
    browser.shot("class")
    counts = {
        name: int(page.text_content(f"#count-{name}")) for name in ("needs_support", "uncertain", "on_track", "failed")
    }
    assert counts["failed"] == 3 and sum(counts.values()) == 30
    errors = page.text_content("#row-errors")
    assert "3 rows could not be predicted" in errors
    assert "row 5 (student 7B-04): Race/ethnicity group: must be one of" in errors
    assert "Writing score (0-100): must be a number" in errors
    assert "row 18 (student 7B-17): Parents' highest level of education: is required" in errors
    assert "row 31 (student 7B-30): Reading score (0-100)" in errors
    assert page.locator("#preview tbody tr").count() == 30
    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename in {
        f"class-predictions-{day.isoformat()}.csv" for day in (before, date.today())
    }
    data = Path(download.value.path()).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")  # a byte-order mark: spreadsheets read the file as UTF-8
    table = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    api = requests.post(f"{served}/predictdata", json={"instances": valid}, timeout=10).json()["predictions"]
    assert [r["student_id"] for r in table] == [f"7B-{i:02d}" for i in range(1, 31)]
    predicted = [r for r in table if not r["error"]]
    assert len(predicted) == 27 and [r["row"] for r in table if r["error"]] == ["5", "18", "31"]
    for row, want in zip(predicted, api, strict=True):
        assert float(row["predicted_math_score"]) == want["math_score"] and row["band"] == want["band"]["name"]
        assert row["band_words"] == BAND_TITLES[want["band"]["name"]]
        assert float(row["below_cut_probability"]) == want["below_cut_probability"]
        assert row["band_without_background"] == want["band_without_background"]
        assert (float(row["interval_low"]), float(row["interval_high"])) == (
            want["interval"]["low"],
            want["interval"]["high"],
        )
    band_counts = {name: sum(p["band"]["name"] == name for p in api) for name in BAND_TITLES}
    assert band_counts == {k: v for k, v in counts.items() if k != "failed"}
    assert not browser.console_errors


def test_pages_fit_a_390_px_wide_phone(served, phone, student, tmp_path):
    page = phone.page
    width = "document.documentElement.scrollWidth"
    page.goto(f"{served}/")
    assert page.evaluate(width) <= 390
    page.goto(f"{served}/predictdata")
    phone.shot("phone-form")
    assert page.evaluate(width) <= 390
    fill(page, student)
    page.click("button[type=submit]")
    page.wait_for_selector("#math-score")
    phone.shot("phone-result")
    assert page.evaluate(width) <= 390
    page.goto(f"{served}/predictdata")
    page.set_input_files("#class_list", str(class_list(tmp_path, random_valid(9), bad_at={2})))
    page.click("button[value=class_list]")
    page.wait_for_selector("#class-result")
    phone.shot("phone-class")
    assert page.evaluate(width) <= 390  # the wide table scrolls inside its own box
    page.goto(f"{served}/no-such-page")
    phone.shot("phone-404")
    assert "We could not find that page" in page.text_content("h1")
    assert not phone.console_errors


AXE = PROJECT / "tests" / "web" / "axe" / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(page) -> list[str]:
    """axe-core's violations on the page as it is now, one line each (rule, impact, where)."""
    if not AXE.is_file():
        unavailable(
            f"axe-core not installed at {AXE} (npm ci --prefix tests/web/axe; scripts/test.sh and buildspec.yml run it)"
        )
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {', '.join(str(n['target']) for n in v['nodes'][:5])}"
        for v in result["violations"]
    ]


def answered(served, n=300):
    """Students with whole-number scores and the API's answers for them."""
    students = random_valid(n)
    answers = requests.post(f"{served}/predictdata", json={"instances": students}, timeout=10).json()["predictions"]
    return list(zip(students, answers, strict=True))


def submit(page, served, student):
    page.goto(f"{served}/predictdata")
    fill(page, student)
    page.click("button[type=submit]")
    page.wait_for_selector("#math-score")


def outside_details(page, selector):
    return page.evaluate(f"!document.querySelector({selector!r}).closest('details')")


def test_a_struggling_student_shows_the_band_the_chance_in_words_and_the_next_step_without_a_click(served, browser):
    from src.config import AppConfig

    page = browser.page
    student, answer = next((s, a) for s, a in answered(served) if a["band"]["name"] == "needs_support")
    submit(page, served, student)
    browser.shot("struggling")
    assert page.text_content("#band") == "Needs support"
    assert page.text_content("#band-label") == "The real math score is very likely below 50."
    assert page.text_content("#chance") == chance_sentence(answer["below_cut_probability"], 50)
    assert re.fullmatch(
        r"(About \d+ in (10|100)|Over 99 in 100) students like this one score below 50\.", page.text_content("#chance")
    )
    assert page.text_content("#next-step-text") == AppConfig().next_step("needs_support")
    for selector in ("#band", "#chance", "#next-step-text"):
        assert page.is_visible(selector) and outside_details(page, selector), selector
    assert not browser.console_errors


def test_a_student_who_completed_test_preparation_sees_no_test_preparation_reason(served, browser, student):
    page = browser.page
    submit(page, served, {**student, "test_preparation_course": "completed"})
    browser.shot("completed-course")
    evidence = " ".join(page.locator("#evidence li").all_text_contents())
    assert evidence.count(" the prediction by ") == 2
    assert "Test preparation" not in evidence and "course" not in evidence
    associations = page.text_content("#associations")
    assert "not an effect of the course" in associations and "never a reason to expect less" in " ".join(
        associations.split()
    )
    assert not browser.console_errors


def test_a_student_whose_band_background_decided_sees_the_sentence(served, browser):
    page = browser.page
    student, answer = next((s, a) for s, a in answered(served) if a["band_without_background"] != a["band"]["name"])
    submit(page, served, student)
    browser.shot("band-flip")
    sentence = " ".join(page.text_content("#band-flip").split())
    assert sentence.startswith("The background details decided this band.")
    assert sentence.endswith(f"the band would be “{BAND_TITLES[answer['band_without_background']]}”.")
    assert page.text_content("#band") == BAND_TITLES[answer["band"]["name"]]
    assert not browser.console_errors


def shown_rows(page):
    return page.evaluate("""Array.from(document.querySelectorAll('#preview tbody tr')).filter(r => !r.hidden)
        .map(r => [Number(r.dataset.row), r.dataset.band, r.dataset.chance === '' ? -1 : Number(r.dataset.chance)])""")


def test_the_class_list_is_sorted_by_chance_resorted_filtered_and_printed(served, browser, tmp_path):
    page = browser.page
    path = class_list(tmp_path, random_valid(57), bad_at={6, 40, 59})
    page.goto(f"{served}/predictdata")
    page.set_input_files("#class_list", str(path))
    page.click("button[value=class_list]")
    page.wait_for_selector("#class-controls:not([hidden])")
    browser.shot("class-default")
    rank = {"needs_support": 0, "uncertain": 1, "on_track": 2, "failed": 3}
    rows = shown_rows(page)
    assert len(rows) == 60
    assert [rank[b] for _, b, _ in rows] == sorted(rank[b] for _, b, _ in rows)  # needs support first, failed last
    scores = page.evaluate("""Array.from(document.querySelectorAll('#preview tbody tr'))
        .filter(r => r.dataset.band === 'uncertain').map(r => Number(r.dataset.score))""")
    assert len(scores) >= 3 and scores == sorted(scores)  # within a band by predicted score, weakest first
    page.select_option("#sort-by", "score")
    predicted = page.evaluate("""Array.from(document.querySelectorAll('#preview tbody tr'))
        .filter(r => r.dataset.score !== '').map(r => Number(r.dataset.score))""")
    assert predicted == sorted(predicted) and page.text_content("#order-words") == "Lowest predicted score first"

    page.select_option("#sort-by", "chance")
    chances = [c for _, _, c in shown_rows(page)]
    assert chances == sorted(chances, reverse=True)
    page.select_option("#sort-by", "file")
    assert [r for r, _, _ in shown_rows(page)] == list(range(2, 62))
    assert page.text_content("#order-words") == "In the order of the file"
    page.uncheck("input[name=show][value=on_track]")
    page.uncheck("input[name=show][value=failed]")
    browser.shot("class-filtered")
    rows = shown_rows(page)
    assert rows and {b for _, b, _ in rows} <= {"needs_support", "uncertain"}
    assert [r for r, _, _ in rows] == sorted(r for r, _, _ in rows)
    assert page.text_content("#shown-count") == f"Showing {len(rows)} of 60 students."
    assert page.url.endswith("/predictdata")  # no reload: the same page, the same answers

    page.check("input[name=show][value=on_track]")
    page.check("input[name=show][value=failed]")
    page.emulate_media(media="print")
    browser.shot("class-print")
    visible_headings = page.evaluate("""Array.from(document.querySelectorAll('h1, h2, h3'))
        .filter(h => h.offsetParent !== null).map(h => h.textContent.trim())""")
    assert visible_headings == ["Class results: 60 students"]
    for hidden in ("form", "footer", "header", "#download", "#class-controls", "button"):
        assert not page.is_visible(hidden), hidden
    assert page.is_visible("#class-meta") and page.is_visible("#band-counts") and page.is_visible("#preview")
    assert page.evaluate("getComputedStyle(document.querySelector('#preview tbody tr')).breakInside") == "avoid"
    pdf = tmp_path / "class.pdf"
    page.pdf(path=str(pdf), format="A4")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf.read_bytes()))
    assert 1 <= pages <= 4, pages  # 60 rows of one or two lines, about 20 to an A4 page
    shutil.copy(pdf, browser.shots / "class-print.pdf")
    assert not browser.console_errors


def test_the_class_table_reads_without_javascript(served, shots, tmp_path):
    path = class_list(tmp_path, random_valid(12), bad_at={3})
    for plain in _browser(shots, java_script_enabled=False):
        page = plain.page
        page.goto(f"{served}/predictdata")
        page.set_input_files("#class_list", str(path))
        page.click("button[value=class_list]")
        page.wait_for_selector("#class-result")
        page.screenshot(path=str(shots / "class-no-js.png"), full_page=True)
        assert not page.is_visible("#class-controls")  # no control that would do nothing
        assert page.locator("#preview tbody tr").count() == 13
        assert page.locator("#preview tbody tr").last.get_attribute("data-band") == "failed"

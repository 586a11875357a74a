"""A teacher's path through the form, in headless Chromium against gunicorn on 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port, unavailable
from tests.servers import BIN, start, stop, wait_for

# Debian's chromium; elsewhere (CodeBuild's Ubuntu image) CHROMIUM names the browser to use.
CHROMIUM = Path(os.environ.get("CHROMIUM") or "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture()
def served(store_dir, trained, tmp_path):
    if not CHROMIUM.exists():
        unavailable(f"Chromium not installed at {CHROMIUM} (Debian package chromium, or set CHROMIUM; "
                    ".ci/run and buildspec.yml install it)")
    port = free_port()
    log = tmp_path / "gunicorn.log"
    process = start([str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "app:app"], log=log, env={
        "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "1",
        "ARTIFACTS_DIR": str(store_dir), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "mp")})
    try:
        wait_for(f"http://127.0.0.1:{port}/ready", process, log=log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


@pytest.fixture()
def page(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            context = browser.new_context()
            context.set_default_timeout(15_000)
            yield context.new_page()
        finally:
            browser.close()


def fill(page, student):
    for name, value in student.items():
        if isinstance(value, str):
            page.select_option(f"#{name}", value)
        else:
            page.fill(f"#{name}", str(value))


def test_teacher_gets_the_same_score_as_the_api(served, page, student, tmp_path):
    page.goto(f"{served}/")
    page.click("text=Predict a student's math score")
    assert page.url.endswith("/predictdata")
    fill(page, student)
    page.click("button[type=submit]")
    page.wait_for_selector("#math-score")
    page.screenshot(path=str(tmp_path / "result.png"), full_page=True)
    expected = requests.post(f"{served}/predictdata", json=student, timeout=5).json()
    assert page.text_content("#math-score") == f"{expected['math_score']:.1f}"
    assert page.text_content("#interval-low") == f"{expected['interval']['low']:.1f}"
    assert page.text_content("#interval-high") == f"{expected['interval']['high']:.1f}"
    assert page.input_value("#reading_score") == str(student["reading_score"])


def test_teacher_sees_which_field_to_fix_and_keeps_the_entries(served, page, student):
    page.goto(f"{served}/predictdata")
    fill(page, {**student, "writing_score": 140})
    page.click("button[type=submit]")
    page.wait_for_selector("#writing_score-error")
    assert "must be a number between 0 and 100" in page.text_content("#writing_score-error")
    assert page.input_value("#writing_score") == "140"
    assert page.input_value("#gender") == student["gender"]
    assert page.query_selector("#math-score") is None

"""The model page in headless Chromium against gunicorn: version, metrics, groups and both plots load."""

from __future__ import annotations

import requests

from tests.web.test_browser import browser, served, shots  # noqa: F401  (fixtures: gunicorn, a browser page)


def test_model_page_shows_the_model_and_matches_model_json(served, browser):  # noqa: F811
    page = browser.page
    card = requests.get(f"{served}/model.json", timeout=5).json()
    page.goto(f"{served}/")
    page.click("#model-link")
    assert page.url.endswith("/model")
    page.wait_for_load_state("load")
    browser.shot("model")

    assert page.text_content("#model-version") == card["model_version"]
    assert page.text_content("#model-kind") == card["model"]
    assert page.text_content("#data-fingerprint code").strip() == card["data"]["fingerprint"]
    assert page.text_content("#rows-valid") == str(card["data"]["rows_valid"])
    assert page.text_content("#data-source") == card["data"]["source"] and "/" not in card["data"]["source"]
    test = card["metrics"]["test"]
    assert page.text_content("#test-r2").startswith(f"{test['r2']:.3f} ")
    assert page.text_content("#test-mae") == f"{test['mae']:.1f}"
    assert page.text_content("#test-coverage") == f"{test['interval_coverage'] * 100:.0f}\u00a0%"

    rows = page.query_selector_all("#groups tbody tr[data-group]")
    assert len(rows) == sum(len(groups) for groups in card["groups"].values())
    for row in rows:
        expected = card["groups"][row.get_attribute("data-feature")][row.get_attribute("data-group")]
        assert row.query_selector(".count").text_content() == str(expected["count"])
        if expected["mae"] is not None:
            assert row.query_selector(".mae").text_content() == f"{expected['mae']:.1f}"
            assert row.query_selector(".coverage").text_content() == f"{expected['coverage'] * 100:.0f} %"
        assert ("small" in (row.get_attribute("class") or "")) == expected["small"]

    for name in ("predicted_vs_actual", "error_by_group"):
        image = page.locator(f"#plot-{name}")
        image.scroll_into_view_if_needed()
        assert image.evaluate("img => img.complete && img.naturalWidth") > 0, name
    assert "never for grading" in page.text_content("#intended-use").lower()


def test_the_model_page_fits_a_320_px_screen_without_sideways_scrolling(served, shots):  # noqa: F811
    from tests.web.test_browser import _browser

    for narrow in _browser(shots, viewport={"width": 320, "height": 700}):
        narrow.page.goto(f"{served}/model")
        narrow.shot("model-320")
        assert narrow.page.evaluate("document.documentElement.scrollWidth") <= 320
        assert not narrow.console_errors


def test_the_form_links_to_the_model_page(served, browser):  # noqa: F811
    page = browser.page
    page.goto(f"{served}/predictdata")
    page.click("#model-link")
    page.wait_for_selector("#model-version")

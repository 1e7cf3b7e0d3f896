"""`receive --web` in a real headless Chromium (Debian's chromium and chromium-driver): an event
POSTed to the receiver appears on the open page without a reload, times in the browser's zone,
and the page's policy blocks nothing of its own. One browser for the module; a screenshot of the
page is saved (ESA_SCREENSHOTS, default /tmp/eventsink-agent-screenshots)."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.tools.receiver_web_helpers import PASSWORD, envelope, post, receiver_with_page

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOTS = os.environ.get("ESA_SCREENSHOTS") or "/tmp/eventsink-agent-screenshots"


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="esa-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_an_event_appears_on_the_open_page_without_a_reload(browser):
    with receiver_with_page() as (rx, page):
        assert (
            post(rx, envelope(1, "conference_started", name="Weekly sync", service_type="conference"), "msg_1") == 200
        )
        browser.get(page.url)
        wait = WebDriverWait(browser, 10)
        wait.until(lambda d: d.find_element(By.ID, "live-state").get_attribute("class") == "live")
        first = browser.find_element(By.ID, "request-1")  # stays the same element unless the page reloads
        assert "conference_started" in first.text and "Weekly sync [conference]" in first.text

        assert post(rx, envelope(2), "msg_2") == 200
        assert post(rx, envelope(4), "msg_4", password="not-it") == 401
        assert post(rx, envelope(4), "msg_4") == 200
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#entries > li")) == 4)
        rows = browser.find_elements(By.CSS_SELECTOR, "#entries > li")
        assert [r.get_attribute("id") for r in rows] == ["request-4", "request-3", "request-2", "request-1"]
        newest = rows[0].text
        assert "participant_connected" in newest and "Weekly sync (Alice / u-4)" in newest and "msg_4" in newest
        assert "gap: missing 3" in newest and '"seq": 4' in newest  # the flag, and the body as formatted JSON
        assert "auth: failed: wrong Basic credentials" in rows[1].text
        assert first.is_displayed() and first.get_attribute("id") == "request-1"  # not stale: no reload

        figures = {f.get_attribute("data-key"): f for f in browser.find_elements(By.CSS_SELECTOR, "#summary .figure")}
        assert figures["events"].find_element(By.TAG_NAME, "dd").text == "3"
        assert "bad" in figures["gaps"].get_attribute("class") and "bad" in figures["auth_failures"].get_attribute(
            "class"
        )
        time = rows[0].find_element(By.TAG_NAME, "time")
        assert time.get_attribute("title").endswith(" UTC") and not time.text.endswith("UTC")  # local, UTC on hover
        assert PASSWORD not in browser.page_source
        os.makedirs(SCREENSHOTS, exist_ok=True)
        assert browser.save_screenshot(os.path.join(SCREENSHOTS, "receive-web.png"))
    blocked = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert blocked == []

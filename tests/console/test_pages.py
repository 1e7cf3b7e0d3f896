"""The console in a real headless Chromium, against a real agent: log in; every
sink with its figures, changing without a reload as events flow; Restart and the
receiver's eventsink_started; Replay with a dry-run count, then Confirm; Redrive
and Discard of dead letters; Alarms; View schema and both downloads (valid
documents); Configuration with secrets masked; Log out. Each test saves a
screenshot under tests/console/screenshots/."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from openapi_spec_validator import OpenAPIV2SpecValidator, OpenAPIV31SpecValidator, validate
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.console.browser import Chromium
from tests.console.conftest import POISON, SECRETS
from tests.console.harness import PASSWORD
from tests.helpers import wait_until

CONF = {"name": "Weekly sync", "service_type": "conference", "is_locked": False, "tag": ""}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = Chromium(str(tmp_path_factory.mktemp("downloads")))
    yield chromium
    chromium.quit()


@pytest.fixture
def console(agent, browser):
    """The browser, logged in (once per module: the session cookie stays)."""
    browser.open(agent.console_url + "/")
    if "/login" in browser.driver.current_url:
        browser.find("#password").send_keys(PASSWORD)
        browser.button("Log in").click()
        browser.wait().until(lambda d: d.find_elements(By.CSS_SELECTOR, "table.sinks"))
    return browser


def publish(agent, n: int, tag: str = "e") -> None:
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        for i in range(n):
            pub.publish("conference_updated", {**CONF, "tag": f"{tag}-{i}"})
        assert pub.flush(timeout=20)


def row(browser, sink: str):
    return browser.find(f'tr[data-sink="{sink}"]')


def cell(browser, sink: str, field: str) -> str:
    return row(browser, sink).find_element(By.CSS_SELECTOR, f'[data-field="{field}"]').text


def test_login_form_then_every_sink_with_its_figures(agent, browser, shots):
    browser.open(agent.console_url + "/")
    assert "/login" in browser.driver.current_url
    browser.find("#password").send_keys("wrong password")
    browser.button("Log in").click()
    assert browser.wait_text("p.error", "Wrong user name or password.") == "Wrong user name or password."
    browser.shot(shots, "login-refused")
    browser.find("#password").send_keys(PASSWORD)
    browser.button("Log in").click()
    table = browser.find("table.sinks")
    headings = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    for label in (
        "Name",
        "Description",
        "Version",
        "URL",
        "Locations",
        "State",
        "Backlog",
        "In flight",
        "Delivered",
        "Failures",
        "Current backoff",
        "Alarms",
        "Last attempted restart",
    ):
        assert label in headings
    names = [r.get_attribute("data-sink") for r in browser.all("tr[data-sink]")]
    assert names == [s["name"] for s in agent.status()["sinks"]]
    siem = row(browser, "siem")
    assert "bob" not in siem.text and "http://127.0.0.1:" in siem.text  # the URL without credentials
    assert cell(browser, "cdr", "state") == "running"
    badge = row(browser, "cdr").find_element(By.CSS_SELECTOR, ".state")
    assert "state-running" in badge.get_attribute("class")
    assert badge.value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"  # a status colour
    delivered = row(browser, "cdr").find_element(By.CSS_SELECTOR, '[data-field="delivered"]')
    assert delivered.value_of_css_property("text-align") == "right"
    assert all(b.text == "Restart" for b in browser.all("tr[data-sink] button"))
    browser.shot(shots, "event-sinks")


def test_figures_change_without_a_reload_when_events_flow(agent, console, receiver, shots):
    before = int(cell(console, "cdr", "delivered"))
    console.mark()
    publish(agent, 5)
    console.wait(15).until(lambda d: int(cell(console, "cdr", "delivered")) >= before + 5)
    assert console.still_marked(), "the page was reloaded"
    console.shot(shots, "event-sinks-live")


def test_restart_sends_eventsink_started_to_the_receiver(agent, console, receiver, shots):
    started = receiver.event_names().count("eventsink_started")
    console.button("Restart", row(console, "cdr")).click()
    console.wait_text("p.notice", "Restart requested")
    assert receiver.wait_for(lambda r: r.event_names().count("eventsink_started") > started, 15)
    console.wait(15).until(lambda d: cell(console, "cdr", "last_attempted_restart") not in ("", "-"))
    # times in the browser's zone, UTC on hover
    when = row(console, "cdr").find_element(By.CSS_SELECTOR, '[data-field="last_attempted_restart"] time')
    iso = when.get_attribute("datetime")
    assert when.get_attribute("title").endswith(" UTC")
    assert when.get_attribute("title").startswith(iso[:10])
    assert iso[11:16] not in when.text  # Asia/Kolkata is 5:30 off UTC
    console.shot(shots, "restarted")


def test_sink_page_replay_counts_first_then_resends_on_confirm(agent, console, receiver, shots):
    publish(agent, 3, tag="replayed")
    assert receiver.wait_for(
        lambda r: "replayed-2" in [e["data"].get("tag") for e in r.events if isinstance(e.get("data"), dict)], 15
    )
    console.open(agent.console_url + "/")
    console.link("cdr").click()
    console.wait_text("h1", "Sink cdr")
    console.find("#since").send_keys("1d")
    console.button("Replay").click()
    count = int(console.text("#replay-count"))
    delivered = agent.sink_status("cdr")["delivered"]
    assert count >= 3  # the events published above are retained
    console.shot(shots, "replay-dry-run")
    updates = receiver.event_names().count("conference_updated")
    console.button("Confirm").click()
    console.wait_text("p.notice", "Replay started")
    assert receiver.wait_for(lambda r: r.event_names().count("conference_updated") >= updates + count - 1, 20)
    wait_until(lambda: agent.sink_status("cdr")["delivered"] > delivered, 15, what="the replay delivered")
    console.shot(shots, "sink-page")


def test_dead_letters_redrive_and_discard(agent, console, poison_receiver, shots):
    publish(agent, 2, tag=POISON)
    wait_until(lambda: agent.sink_status("dl")["dead_letters"] == 2, 20, what="two dead letters")
    console.open(agent.console_url + "/sinks/dl")
    rows = console.all("table.dead-letters tbody tr")
    assert len(rows) == 2
    first, second = (r.get_attribute("data-id") for r in rows)
    console.shot(shots, "dead-letters")
    poison_receiver.reject_events(None)
    console.button("Redrive", console.find(f'tr[data-id="{first}"]')).click()
    console.wait_text("p.notice", "Redrive requested")
    assert poison_receiver.wait_for(
        lambda r: any(q.headers.get("webhook-id") == first and q.status == 200 for q in r.requests), 15
    )
    console.button("Discard", console.find(f'tr[data-id="{second}"]')).click()
    console.wait_text("p.notice", "discarded")
    wait_until(lambda: agent.sink_status("dl")["dead_letters"] == 0, 15, what="no dead letters")
    console.open(agent.console_url + "/sinks/dl")
    assert console.text("main").count("No dead letters.") == 1
    console.shot(shots, "dead-letters-done")


def live_rows(browser) -> list[dict]:
    out = []
    for body in browser.all("table.live tbody.delivery"):
        cells = [td.text for td in body.find_elements(By.CSS_SELECTOR, "tr:first-child td")]
        out.append(
            {
                "sink": cells[1],
                "seq": cells[2],
                "event": cells[3],
                "webhook_id": cells[4],
                "status": cells[5],
                "body": body.find_element(By.CSS_SELECTOR, "pre").text,
            }
        )
    return out


def test_live_shows_each_post_as_it_is_sent_newest_first(agent, console, receiver, shots):
    console.link("Live").click()
    console.wait().until(lambda d: "Following" in console.text("#live-status"))
    console.mark()
    publish(agent, 1, tag="live-one")

    def shown():
        rows = [r for r in live_rows(console) if '"live-one-0"' in r["body"]]
        return rows if {r["sink"] for r in rows} >= {"cdr", "siem", "dl"} else None

    rows = console.wait(15).until(lambda d: shown())
    assert console.still_marked(), "the page was reloaded"
    cdr = next(r for r in rows if r["sink"] == "cdr")
    assert cdr["event"] == "conference_updated" and cdr["status"] == "200" and cdr["webhook_id"]
    assert '\n  "event": "conference_updated",' in cdr["body"]  # the body as indented JSON
    assert live_rows(console)[0]["body"].count("live-one-0") == 1  # newest first
    assert receiver.wait_for(
        lambda r: any(e["data"].get("tag") == "live-one-0" for e in r.events if isinstance(e.get("data"), dict)), 10
    )
    console.shot(shots, "live")


def test_live_narrowed_to_one_sink(agent, console, shots):
    console.open(agent.console_url + "/live?sink=siem")
    console.wait().until(lambda d: "Following" in console.text("#live-status"))
    publish(agent, 1, tag="narrow")
    console.wait(15).until(lambda d: any('"narrow-0"' in r["body"] for r in live_rows(console)))
    assert {r["sink"] for r in live_rows(console)} == {"siem"}
    console.shot(shots, "live-siem")


def test_alarms_page(agent, console, shots):
    console.link("Alarms").click()
    console.wait_text("h1", "Alarms")
    shown = len(console.all("#alarms tbody tr"))
    assert shown == len(agent.alarms())
    if not shown:
        assert console.find("#no-alarms").is_displayed()
    console.shot(shots, "alarms")


def test_view_schema_and_both_downloads_validate(agent, console, browser, shots):
    console.link("View schema").click()
    console.wait_text("h1", "View schema")
    assert console.find("#v2-participant_disconnected").text == "participant_disconnected"
    assert "call_id" in console.text("main") and "string" in console.text("main")
    console.shot(shots, "schema")
    for label, fmt, name in (
        ("Download Swagger schema", "swagger", "eventsink-swagger.json"),
        ("Download OpenAPI schema", "openapi", "eventsink-openapi.json"),
    ):
        console.link(label).click()
        path = os.path.join(browser.downloads, name)
        console.wait(20).until(lambda d: os.path.exists(path) and os.path.getsize(path) > 0)
        with open(path, "rb") as fh:
            doc = json.load(fh)
        validate(doc, cls=OpenAPIV2SpecValidator if fmt == "swagger" else OpenAPIV31SpecValidator)
        printed = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "eventsink-agent"), "schema", "--format", fmt],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert doc == json.loads(printed)
        text = json.dumps(doc)
        assert not any(secret in text for secret in SECRETS)


def test_configuration_shows_secrets_masked_and_the_check(agent, console, shots):
    console.link("Configuration").click()
    text = console.text("main")
    assert "valid" in text and "passes check" in text
    config = console.text("pre.config")
    assert '"password": "***"' in config and '"secret": "***"' in config and '"X-Api-Key": "***"' in config
    assert not any(secret in config for secret in SECRETS)
    assert re.search(r'"url": "http://127\.0\.0\.1:\d+/', config)
    console.shot(shots, "configuration")


LABELLED = """
return Array.from(document.querySelectorAll('a, button, input:not([type=hidden]), select')).filter(function (e) {
  var named = (e.textContent || '').trim() || e.getAttribute('aria-label') ||
              (e.id && document.querySelector('label[for="' + e.id + '"]'));
  return !named || e.tabIndex < 0;
}).map(function (e) { return e.outerHTML.slice(0, 120); });
"""


def test_every_control_has_a_label_and_is_reachable_by_keyboard(agent, console):
    for path in ("/", "/sinks/cdr", "/sinks/dl", "/alarms", "/live", "/schema", "/config"):
        console.open(agent.console_url + path)
        console.find("main")
        assert console.driver.execute_script(LABELLED) == [], path
    console.open(agent.console_url + "/")
    body = console.find("body")
    for _ in range(40):  # Tab through the page until the first Restart button has the focus
        body.send_keys(Keys.TAB)
        focused = console.driver.switch_to.active_element
        if focused.text == "Restart":
            break
    assert focused.get_attribute("aria-label") == "Restart cdr"


def test_log_out_ends_the_session(agent, console, shots):
    console.button("Log out").click()
    console.find("#password")
    console.open(agent.console_url + "/config")
    assert "/login" in console.driver.current_url
    console.shot(shots, "logged-out")

"""`receive --web`: the test receiver's live page over real HTTP on 127.0.0.1, without a browser
(what the page holds with no JavaScript, its headers, the event stream, the Host check, the
loopback rule). The browser itself is in test_receiver_web_browser.py."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess

import pytest

from tests.helpers import wait_until
from tests.tools.receiver_web_helpers import PASSWORD, envelope, get, post, receiver_with_page
from tools.receiver_web import loopback_listen

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENTRY_POINT = os.path.join(REPO, ".venv", "bin", "eventsink-agent")


def test_the_page_shows_what_arrived_without_javascript_newest_first_and_escaped():
    with receiver_with_page() as (rx, page):
        assert (
            post(
                rx,
                envelope(1, "conference_started", name="<script>alert(1)</script>", service_type="conference"),
                "msg_aaa",
            )
            == 200
        )
        assert post(rx, envelope(2), "msg_bbb") == 200
        assert post(rx, envelope(3), "msg_ccc", password="wrong") == 401
        wait_until(lambda: page_count(page) == 3, what="the page to hold three requests", interval=0.02, retry_on=())
        status, _, html = get(page, "/")
    assert status == 200
    assert html.index('id="request-3"') < html.index('id="request-2"') < html.index('id="request-1"')
    first = html[html.index('id="request-1"') :]
    assert "msg_aaa" in first and "conference_started" in first and "auth: ok" in first
    assert "&lt;script&gt;alert(1)&lt;/script&gt; [conference]" in first  # who it is about, escaped
    assert "<script>alert" not in html
    assert "  &quot;seq&quot;: 1,\n" in first  # the body as formatted JSON
    refused = html[html.index('id="request-3"') : html.index('id="request-2"')]
    assert "auth: failed: wrong Basic credentials (user &#x27;cdr-user&#x27;)" in refused and ": 401" in refused
    assert PASSWORD not in html and "wrong" + PASSWORD not in html
    assert re.search(r'data-key="auth_failures">\s*<dt>Auth failures</dt><dd>1</dd>', html)


def page_count(page) -> int:
    _, _, html = get(page, "/")
    return len(re.findall(r'<li class="entry ', html))


def test_seq_gaps_resets_and_duplicate_ids_are_flagged():
    with receiver_with_page() as (rx, page):
        for seq, wid in ((1, "m1"), (3, "m3"), (3, "m3"), (1, "m9")):
            assert post(rx, envelope(seq), wid) == 200
        wait_until(lambda: page_count(page) == 4, what="four requests on the page", interval=0.02, retry_on=())
        _, _, html = get(page, "/")
    flags = re.findall(r'<span class="flag[^"]*">([^<]*)</span>', html)
    assert flags == ["reset", "duplicate", "gap: missing 2"]  # newest first
    for key in ("gaps", "duplicates", "resets"):
        assert re.search(rf'class="figure bad" data-key="{key}">\s*<dt>[^<]+</dt><dd>1</dd>', html), key
    problems = html[html.index('id="problems"') :]
    assert "seq gap from node 10.44.99.2: missing 2" in problems and "duplicate webhook-id m3" in problems


def test_no_inline_script_or_style_and_a_strict_policy():
    with receiver_with_page() as (rx, page):
        post(rx, envelope(1), "m1")
        _, headers, html = get(page, "/")
        script = re.search(r'<script src="(/static/receiver\.js\?v=\w+)"', html).group(1)
        js_status, js_headers, js = get(page, script)
    csp = headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert re.findall(r"<script\b[^>]*>", html) == [re.search(r"<script\b[^>]*>", html).group(0)]
    assert 'src="' in re.search(r"<script\b[^>]*>", html).group(0)
    assert " style=" not in html and "<style" not in html
    assert re.search(r"<[^>]+\son[a-z]+=", html) is None  # no inline event handlers
    assert headers["x-content-type-options"] == "nosniff"
    assert js_status == 200 and "javascript" in js_headers["content-type"] and "EventSource" in js
    assert "innerHTML" not in js  # text goes in as text


def test_the_stream_sends_each_new_request_as_one_event():
    with receiver_with_page() as (rx, page):
        post(rx, envelope(1), "m1")
        wait_until(lambda: page_count(page) == 1, what="the first request on the page", interval=0.02, retry_on=())
        conn = http.client.HTTPConnection(page.host, page.port, timeout=10)
        conn.request("GET", "/stream?after=1")
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
        assert response.readline() == b": live\n"
        post(
            rx,
            envelope(
                2,
                "participant_disconnected",
                uuid="u-2",
                conference="Weekly sync",
                display_name="Alice",
                disconnect_reason="Call disconnected",
            ),
            "m2",
        )
        lines = [response.readline() for _ in range(4)]
        conn.close()
        assert lines[1:4] == [b"id: 2\n", lines[2], b"\n"]
        message = json.loads(lines[2].removeprefix(b"data: "))
        assert page_count(page) == 2  # the page still answers after the stream's client went away
    entry = message["entry"]
    assert (entry["n"], entry["webhook_id"], entry["auth"], entry["status"]) == (2, "m2", "ok", 200)
    assert entry["events"] == [
        {
            "seq": 2,
            "event": "participant_disconnected",
            "flags": [],
            "about": "Weekly sync (Alice / u-2) Call disconnected",
        }
    ]
    assert message["summary"]["events"] == 2 and PASSWORD not in lines[2].decode()


@pytest.mark.parametrize("path", ["/", "/stream", "/static/receiver.js"])
def test_a_request_for_another_host_is_refused(path):
    with receiver_with_page() as (_, page):
        status, _, _ = get(page, path, {"Host": f"attacker.example:{page.port}"})
        assert status == 403
        assert get(page, path if path != "/stream" else "/", {"Host": f"localhost:{page.port}"})[0] == 200


@pytest.mark.parametrize("value", ["127.0.0.1:8081", "127.8.9.10:1", "[::1]:8081", "localhost:8081"])
def test_loopback_addresses_are_accepted(value):
    assert loopback_listen(value)[1] in (8081, 1)


@pytest.mark.parametrize("value", ["0.0.0.0:8081", "10.44.99.2:8081", "[::]:8081", "example.com:80", "nonsense"])
def test_anything_else_is_refused_by_the_command_in_one_sentence(value):
    done = subprocess.run(
        [ENTRY_POINT, "receive", "--listen", "127.0.0.1:0", "--web", value], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("eventsink-agent receive: --web must be ") and done.stderr.count("\n") == 1


def test_the_receive_command_serves_its_page_until_sigterm():
    proc = subprocess.Popen(
        [
            ENTRY_POINT,
            "receive",
            "--listen",
            "127.0.0.1:0",
            "--web",
            "127.0.0.1:0",
            "--username",
            "u",
            "--password",
            "p",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        listening, live = proc.stdout.readline(), proc.stdout.readline()
        port = int(re.search(r"127\.0\.0\.1:(\d+)/events", listening).group(1))
        web_port = int(
            re.fullmatch(r"eventsink-agent receive: live page at http://127\.0\.0\.1:(\d+)/\n", live).group(1)
        )
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/events", json.dumps(envelope(1)), {"Authorization": "Basic dTpw", "webhook-id": "w1"})
        assert conn.getresponse().status == 200
        conn.close()
        page = type("Page", (), {"host": "127.0.0.1", "port": web_port})()
        wait_until(
            lambda: page_count(page) == 1, what="the command's page to show the event", interval=0.02, retry_on=()
        )
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and err == ""
    assert "received 1 events in 1 requests" in out


def test_a_bulk_envelope_is_one_request_with_each_event_and_a_bad_one_says_why():
    with receiver_with_page() as (rx, page):
        bulk = {
            "node": "10.44.99.2",
            "seq": 3,
            "version": 2,
            "time": 1700000001.0,
            "event": "eventsink_bulk",
            "data": [envelope(1), envelope(2)],
        }
        assert post(rx, bulk, "b1") == 200
        conn = http.client.HTTPConnection(rx.host, rx.port, timeout=5)
        conn.request("PUT", "/events", b"{}")
        assert conn.getresponse().status == 405
        conn.close()
        wait_until(lambda: page_count(page) == 2, what="two requests on the page", interval=0.02, retry_on=())
        _, _, html = get(page, "/")
    bulk_entry = html[html.index('id="request-1"') :]
    assert re.findall(r'<span class="flag info">([^<]*)</span>', bulk_entry) == ["bulk 1/2", "bulk 2/2"]
    assert re.findall(r'<td class="num">(\d+)</td>', bulk_entry) == ["1", "2"]
    put = html[html.index('id="request-2"') : html.index('id="request-1"')]
    assert '<p class="problem">method PUT not allowed: POST events here</p>' in put
    assert "auth: not checked" in put and ": 405" in put


def test_recording_wakes_the_page_only_while_a_stream_follows():
    from tools.receiver import Receiver
    from tools.receiver_web import LivePage

    with Receiver() as rx:
        live = LivePage(rx)
        wakes = []
        live.wake = lambda: wakes.append(1)
        rx.watch(live.record)
        post(rx, envelope(1), "m1")
        assert wakes == [] and live.count == 1
        live.followers = 1
        post(rx, envelope(2), "m2")
        assert wakes == [1] and [e["n"] for e in live.entries()] == [2, 1]
        assert [e["n"] for e in live.newer_than(1)] == [2]

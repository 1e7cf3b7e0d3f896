"""End to end: a sink's HTTP options on a real agent, and a search of every output for their secrets.

- Every option at once against real parts: a TLS receiver that requires a client certificate,
  reached through tinyproxy (CONNECT) with proxy credentials, a bearer token from a file, an extra
  header, gzip bodies signed as sent; a rotated token file applied by a reload.
- A sink whose proxy is down fails with the same secrets in its settings, so the failure paths
  (support.events, status, metrics) are searched too.
- max_rate measured: 60 events at 20 per second take at least 2.5 s, all delivered, in order,
  and the waiting worker sleeps (its CPU stays small).
"""

from __future__ import annotations

import shutil
import tempfile

import pytest

from tests.bench.runs import proc_cpu
from tests.e2e.harness import free_port, publish, sink
from tests.helpers import wait_until
from tests.sinks.real_servers import Tinyproxy
from tests.tls_files import make_pki

pytestmark = pytest.mark.e2e

HEADER_VALUE = "hdr-Vk93-secret"
OLD_TOKEN, NEW_TOKEN = "tok-old-Qx71", "tok-new-Lm42"
PROXY_USER, PROXY_PASSWORD = "agentproxy", "px-Pw55-secret"
SIGNING = "whsec_ZXZlbnRzaW5rLWFnZW50IGUyZSBzaWduaW5nIGtleSE="
CONF = {"name": "Weekly sync", "service_type": "conference"}


@pytest.fixture
def pki():
    d = tempfile.mkdtemp(prefix="esa-pki-", dir="/tmp")
    yield make_pki(d)
    shutil.rmtree(d, ignore_errors=True)


def names(rx) -> list[str]:
    return [e["event"] for e in rx.events]


def test_every_option_through_real_parts_and_no_secret_shows(make_agent, make_receiver, pki):
    rx = make_receiver(
        tls_cert=pki.server_cert, tls_key=pki.server_key, client_ca=pki.ca_cert, bearer_token=OLD_TOKEN, secret=SIGNING
    )
    with Tinyproxy(connect_port=rx.port, user=PROXY_USER, password=PROXY_PASSWORD) as proxy:
        agent = make_agent([], start=False, tuning={"initial_retry_backoff": 0.2, "max_retry_backoff": 60})
        token_file = f"{agent.base}/cdr.token"
        with open(token_file, "w") as fh:
            fh.write(OLD_TOKEN + "\n")
        options = dict(
            headers={"X-Api-Key": HEADER_VALUE},
            bearer_token_file=token_file,
            ca_file=pki.ca_cert,
            client_cert=pki.client_cert,
            client_key=pki.client_key,
            compression="gzip",
            secret=SIGNING,
            proxy=proxy.url(PROXY_USER, PROXY_PASSWORD),
        )
        dead_proxy = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{free_port()}"
        agent.sinks = [
            sink("cdr", rx.url, **options),
            sink("dead", rx.url.replace("/events", "/dead"), **{**options, "proxy": dead_proxy}),
        ]
        agent.write_config()
        agent.start()
        publish(agent, [("conference_started", CONF), ("conference_ended", CONF)])
        assert rx.wait_events(3, timeout=20), (rx.summary(), rx.problems)
        first = rx.requests[0]
        assert first.headers["x-api-key"] == HEADER_VALUE and first.headers["authorization"] == f"Bearer {OLD_TOKEN}"
        assert first.headers["content-encoding"] == "gzip" and first.content is not None
        assert "CONNECT" in proxy.log() and "via" not in first.headers
        assert rx.summary()["bad_signatures"] == 0 and rx.summary()["auth_failures"] == 0

        rx.bearer_token = NEW_TOKEN  # the receiver's token was rotated; the operator rotates the file
        with open(token_file, "w") as fh:
            fh.write(NEW_TOKEN + "\n")
        code, body = agent.post("/v1/reload")
        assert code == 200 and body["changed"] == ["cdr", "dead"], body  # both read the token file
        assert rx.wait_for(lambda r: "eventsink_updated" in names(r), timeout=20), rx.summary()
        assert rx.requests[-1].headers["authorization"] == f"Bearer {NEW_TOKEN}"
        assert names(rx)[:3] == ["eventsink_started", "conference_started", "conference_ended"]
        wait_until(lambda: agent.sink_status("dead")["failures"] >= 2, timeout=20, what="the dead proxy's failures")

        seen = agent.outward_texts()
        assert agent.stop() == 0
    seen["log"] = agent.log()
    assert "support.events" in seen["log"] and "sink dead" in seen["log"]  # the failures are there to search
    secrets = (HEADER_VALUE, OLD_TOKEN, NEW_TOKEN, PROXY_PASSWORD, f"{PROXY_USER}:", pki.client_key, SIGNING)
    for where, text in seen.items():
        assert text, where
        for secret in secrets:
            assert secret not in text, f"{secret!r} appears in {where}"


def test_max_rate_spaces_the_posts_and_keeps_the_order(make_agent, receiver):
    agent = make_agent([sink("cdr", receiver.url, max_rate=20)])
    assert receiver.wait_events(1)  # eventsink_started: the clock starts here
    publish(agent, [("conference_updated", {**CONF, "n": i}) for i in range(59)])
    workers = agent.child_pids()
    cpu_before = sum(proc_cpu(pid) for pid in workers)
    assert receiver.wait_events(60, timeout=20), receiver.summary()
    arrivals = [q.t for q in receiver.requests]
    spread = arrivals[59] - arrivals[0]
    assert spread >= 2.5, f"60 events at 20/s arrived within {spread:.2f} s"
    assert [e["seq"] for e in receiver.events] == list(range(1, 61))
    cpu = sum(proc_cpu(pid) for pid in workers) - cpu_before
    assert cpu < 0.2 * spread, f"the agent used {cpu:.2f} s of CPU while pacing for {spread:.1f} s (a busy wait?)"

"""End to end: reload through the control socket and SIGHUP; a broken file changes nothing."""

import signal

import pytest

from tests.e2e.harness import sink
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def names(rx):
    return [e["event"] for e in rx.events]


def test_reload_adds_changes_and_removes_sinks(make_agent, make_receiver):
    rx_a, rx_b, rx_c = make_receiver(), make_receiver(), make_receiver()
    agent = make_agent([sink("a", rx_a.url, version=1), sink("b", rx_b.url, version=2)])
    assert rx_a.wait_events(1) and rx_b.wait_events(1)

    agent.sinks = [sink("b", rx_b.url, version=2, description="now described"), sink("c", rx_c.url)]
    agent.write_config()
    code, body = agent.post("/v1/reload")
    assert code == 200, body
    assert rx_a.wait_for(lambda r: "eventsink_stopped" in names(r))
    assert rx_b.wait_for(lambda r: "eventsink_updated" in names(r))
    assert rx_c.wait_events(1) and names(rx_c) == ["eventsink_started"]
    wait_until(lambda: sorted(s["name"] for s in agent.status()["sinks"]) == ["b", "c"], what="sinks b, c")
    agent.wait_running()
    assert names(rx_a) == ["eventsink_started", "eventsink_stopped"]
    assert [e["seq"] for e in rx_a.events] == [1, 2]
    assert names(rx_b) == ["eventsink_started", "eventsink_updated"] and rx_b.events[1]["seq"] == 2

    # events keep flowing to the changed and the added sink, not the removed one
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        pub.publish("conference_started", {"name": "after reload"})
        assert rx_b.wait_events(3) and rx_c.wait_events(2)
    assert len(rx_a.events) == 2

    # a broken file: 400 with the problems, nothing changes
    agent.write_config("[node]\naddress = 'nope'\n[[sink]]\nname = 1\n")
    code, body = agent.post("/v1/reload")
    assert code == 400 and body["problems"] and "error" in body
    assert sorted(s["name"] for s in agent.status()["sinks"]) == ["b", "c"]
    assert all(s["state"] == "running" for s in agent.status()["sinks"])


def test_sighup_reloads_like_the_control_socket(make_agent, make_receiver):
    rx_a, rx_b = make_receiver(), make_receiver()
    agent = make_agent([sink("a", rx_a.url, version=2)])
    assert rx_a.wait_events(1)
    agent.sinks = [sink("b", rx_b.url, version=1)]
    agent.write_config()
    agent.proc.send_signal(signal.SIGHUP)
    assert rx_a.wait_for(lambda r: "eventsink_ended" in names(r))  # version 2's stop event
    assert rx_b.wait_events(1)
    wait_until(lambda: [s["name"] for s in agent.status()["sinks"]] == ["b"], what="only b")

    # SIGHUP with a broken file logs the problems and changes nothing
    agent.write_config("this is not toml [")
    agent.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "not reloaded" in agent.log() or "not valid TOML" in agent.log(), what="reload refusal logged")
    assert [s["name"] for s in agent.status()["sinks"]] == ["b"]
    assert agent.proc.poll() is None
    assert agent.stop() == 0
    assert names(rx_b)[-1] == "eventsink_stopped"  # version 1's stop event at shutdown


def test_reload_applies_a_rotated_password_file(make_agent, make_receiver):
    """The receiver's password was rotated; the operator writes it to password_file and reloads."""
    rx = make_receiver(username="cdr", password="new-pass")
    agent = make_agent([sink("cdr", rx.url, version=2)], start=False, tuning={"initial_retry_backoff": 0.2})
    pw = f"{agent.base}/cdr.secret"
    with open(pw, "w") as fh:
        fh.write("old-pass\n")
    agent.sinks = [sink("cdr", rx.url, version=2, username="cdr", password_file=pw)]
    agent.write_config()
    agent.start()
    assert rx.wait_for(lambda r: r.summary()["auth_failures"] >= 1)
    assert rx.events == []
    with open(pw, "w") as fh:
        fh.write("new-pass\n")
    code, body = agent.post("/v1/reload")
    assert code == 200 and body["changed"] == ["cdr"], body
    assert rx.wait_for(lambda r: "eventsink_updated" in names(r)), rx.summary()
    assert names(rx)[0] == "eventsink_started"  # the event that failed before, now delivered
    assert "new-pass" not in agent.log() and "old-pass" not in agent.log()

"""End to end: a worker killed with SIGKILL is restarted and loses nothing; SIGTERM
with a backlog exits promptly and the backlog survives into the next run."""

import os
import signal
import threading
import time

import pytest

from tests.e2e.harness import sink
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def delivered_names(rx):
    return {e["data"]["name"] for e in rx.events if e["event"] == "conference_updated"}


def test_kill_9_worker_redelivers_with_same_webhook_id(make_agent, receiver):
    agent = make_agent([sink("cdr", receiver.url)])
    total = 600
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        first_pid = agent.sink_status("cdr")["pid"]
        done = threading.Event()

        def publish():
            for i in range(total):
                pub.publish("conference_updated", {"name": f"c{i}"})
                if i % 50 == 0:
                    time.sleep(0.02)  # pacing so the kill lands mid-flow
            done.set()

        t = threading.Thread(target=publish)
        t.start()
        wait_until(lambda: len(receiver.events) > 50, what="some deliveries")
        os.kill(first_pid, signal.SIGKILL)
        t.join(30)
        assert done.is_set()
        wait_until(
            lambda: (
                agent.sink_status("cdr")["pid"] not in (None, first_pid)
                and agent.sink_status("cdr")["state"] == "running"
            ),
            what="worker restarted",
        )
        assert receiver.wait_for(lambda r: len(delivered_names(r)) == total, timeout=30), len(delivered_names(receiver))

    st = agent.sink_status("cdr")
    assert st["restarts"] >= 1
    assert agent.metric("eventsink_worker_restarts_total", sink="cdr") >= 1
    # the restarted worker announced itself again at seq 1
    assert sum(1 for e in receiver.events if e["event"] == "eventsink_started") == 2
    # every body POSTed more than once carried the same webhook-id each time
    by_id: dict[str, set] = {}
    for r in receiver.requests:
        if b"conference_updated" in r.body:
            name = r.body.split(b'"name":"')[1].split(b'"')[0]
            by_id.setdefault(name, set()).add(r.headers["webhook-id"])
    assert len(by_id) == total
    assert all(len(ids) == 1 for ids in by_id.values())


def test_sigterm_with_backlog_then_backlog_delivered_after_restart(make_agent, receiver):
    receiver.refuse()
    agent = make_agent([sink("cdr", receiver.url)], tuning={"initial_retry_backoff": 0.2, "max_retry_backoff": 5})
    n = 40
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        for i in range(n):
            pub.publish("conference_updated", {"name": f"c{i}"})
        wait_until(lambda: agent.status()["bus"]["received"] >= n, what="journaled")
    t0 = time.monotonic()
    assert agent.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t0 < 10
    assert not delivered_names(receiver)

    receiver.accept()
    agent.start()
    assert receiver.wait_for(lambda r: len(delivered_names(r)) == n, timeout=20), len(delivered_names(receiver))
    # delivered in order after the new eventsink_started
    updates = [e["data"]["name"] for e in receiver.events if e["event"] == "conference_updated"]
    assert updates == [f"c{i}" for i in range(n)]
    assert receiver.events[0]["event"] == "eventsink_started" and receiver.events[0]["seq"] == 1


def test_stop_event_follows_the_last_sent_seq_so_receivers_see_no_gap(make_agent, receiver):
    """A bulk sink stopped while a partial envelope waits: those events stay in the journal,
    and the stop event takes the seq after the last one sent, not after the unsent ones."""
    agent = make_agent([sink("cdr", receiver.url, version=1, bulk=True, bulk_interval=5.0)])
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        assert receiver.wait_events(1)  # eventsink_started, alone in its envelope
        for i in range(3):
            pub.publish("conference_updated", {"name": f"c{i}"})
        wait_until(lambda: agent.status()["bus"]["received"] >= 3, what="journaled")
    assert agent.stop() == 0
    assert [(e["event"], e["seq"]) for e in receiver.events] == [("eventsink_started", 1), ("eventsink_stopped", 2)]
    assert receiver.problems == []
    receiver.events.clear()
    agent.sinks[0]["bulk_interval"] = 0.2  # the held envelope has done its part: no 5 s wait for the rest
    agent.write_config()
    agent.start()
    assert receiver.wait_for(lambda r: len(delivered_names(r)) == 3, timeout=15)


def test_stop_event_after_a_failed_post_reuses_its_seq(make_agent, receiver):
    """In backoff at shutdown: the failed event goes back to the journal, and the stop event
    takes the seq after the last acknowledged one, so the receiver sees no gap."""
    agent = make_agent([sink("cdr", receiver.url, version=2)], tuning={"initial_retry_backoff": 30})
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        assert receiver.wait_events(1)
        receiver.respond(503)
        pub.publish("conference_updated", {"name": "c0"})
        wait_until(lambda: agent.sink_status("cdr")["current_backoff"] > 0, what="in backoff")
    receiver.respond(200)
    assert agent.stop() == 0
    assert [(e["event"], e["seq"]) for e in receiver.events] == [("eventsink_started", 1), ("eventsink_ended", 2)]
    assert receiver.problems == []

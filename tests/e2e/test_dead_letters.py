"""Dead letters with real processes: a poison event no longer blocks a sink.

A receiver on 127.0.0.1 refuses one event (by its content) with 400; with
`dead_letter_after = 3` the agent sets it aside after three answers in a row and
delivers everything else, in order where order is promised. The dead letter is
listed, counted, survives a worker `kill -9` and an agent restart, and is
redriven or discarded through eventsinkctl."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.e2e.harness import Agent, sink
from tests.helpers import dedupe_bulk, wait_until

pytestmark = pytest.mark.e2e

CONF = {"name": "Weekly sync", "service_type": "conference", "is_locked": False, "tag": ""}
FAST_RETRIES = {"initial_retry_backoff": 0.02, "max_retry_backoff": 60}
POISON = "e-500"


def tags_in(envelope: dict) -> list[str]:
    inner = envelope["data"] if envelope["event"] == "eventsink_bulk" else [envelope]
    return [e["data"].get("tag") for e in inner if isinstance(e.get("data"), dict)]


def refuse_poison(envelope: dict) -> int | None:
    return 400 if POISON in tags_in(envelope) else None


def publish_tags(agent, n: int, prefix: str = "e") -> None:
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        for i in range(n):
            pub.publish("conference_updated", {**CONF, "tag": f"{prefix}-{i}"})
        assert pub.flush(timeout=20)


def dead_letters(agent, name: str = "cdr") -> list[dict]:
    done = agent.ctl("dead-letters", name, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def delivered_tags(rx) -> list[str]:
    return [e["data"]["tag"] for e in rx.events if e["event"] == "conference_updated"]


@pytest.mark.parametrize(
    "shape",
    [{"max_in_flight": 1}, {"max_in_flight": 8}, {"bulk": True, "bulk_max_events": 64, "bulk_interval": 0.05}],
    ids=["in-order", "8-in-flight", "bulk"],
)
def test_a_poison_event_among_1000_is_set_aside_and_the_rest_delivered(make_agent, receiver, shape):
    receiver.reject_events(refuse_poison)
    agent = make_agent([sink("cdr", receiver.url, dead_letter_after=3, **shape)], tuning=FAST_RETRIES)
    publish_tags(agent, 1000)
    wait_until(lambda: len(delivered_tags(receiver)) == 999, timeout=60, what="999 events")
    expected = [f"e-{i}" for i in range(1000) if i != 500]
    tags = delivered_tags(receiver)
    if shape.get("max_in_flight", 1) == 1:
        assert tags == expected  # in order, the poison one missing
        seqs = [e["seq"] for e in receiver.events if e["event"] == "conference_updated"]
        assert seqs[500] == seqs[499] + 2  # its seq stays used: the receiver sees the gap
    else:
        assert sorted(tags) == sorted(expected)
    [letter] = wait_until(lambda: dead_letters(agent), timeout=10, what="the dead letter listed")
    assert letter["event"] == "conference_updated" and letter["status"] == 400 and letter["attempts"] == 3
    assert "refused by this receiver's rule" in letter["detail"] and letter["accepted_at"].endswith("Z")
    refused = [r for r in receiver.requests if r.status == 400 and POISON in tags_in(json.loads(r.body))]
    if not shape.get("bulk"):
        assert {r.headers["webhook-id"] for r in refused} == {letter["id"]}
    wait_until(lambda: agent.metric("eventsink_dead_letter_events", sink="cdr") == 1, timeout=10, what="gauge")
    assert agent.metric("eventsink_dead_letters_total", sink="cdr") == 1
    assert agent.sink_status("cdr")["dead_letters"] == 1 and agent.sink_status("cdr")["alarms"] == []
    assert "set aside as a dead letter after 3 answers of HTTP 400" in agent.log()

    # The receiver learns the event: redrive sends it first, under a new seq, with its webhook-id.
    receiver.reject_events(None)
    before = len(receiver.requests)
    done = agent.ctl("redrive", "cdr")
    assert done.returncode == 0 and "1 dead letters redriven" in done.stdout, done.stdout + done.stderr
    wait_until(lambda: POISON in delivered_tags(receiver), timeout=20, what="the redriven event")
    after = [e for e in receiver.events[999 + 1 :] if e["event"] != "eventsink_bulk"]
    if shape.get("max_in_flight", 1) > 1:  # POSTs in flight together arrive in any order: seq is the send order
        after.sort(key=lambda e: e["seq"])
    assert [e["event"] for e in after[:2]] == ["eventsink_started", "conference_updated"]
    assert after[0]["seq"] == 1 and after[1]["seq"] == 2 and after[1]["data"]["tag"] == POISON
    ok = [r for r in receiver.requests[before:] if r.status == 200 and POISON in tags_in(json.loads(r.body))]
    if not shape.get("bulk"):
        assert ok[0].headers["webhook-id"] == letter["id"]
    wait_until(lambda: dead_letters(agent) == [], timeout=10, what="the dead letter gone")
    wait_until(lambda: agent.metric("eventsink_dead_letter_events", sink="cdr") == 0, timeout=10, what="gauge 0")


def test_dead_letters_survive_kill_9_and_an_agent_restart_and_discard_logs_the_uid(make_agent, receiver):
    receiver.reject_events(refuse_poison)
    agent = make_agent([sink("cdr", receiver.url, dead_letter_after=2)], tuning=FAST_RETRIES)
    publish_tags(agent, 600)
    wait_until(lambda: len(delivered_tags(receiver)) == 599, timeout=60, what="599 events")
    [letter] = dead_letters(agent)
    pid = agent.sink_status("cdr")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: agent.sink_status("cdr")["pid"] not in (None, pid), timeout=20, what="a new worker")
    assert dead_letters(agent) == [letter]
    assert agent.stop() == 0
    again = Agent(agent.sinks, tuning=agent.tuning, base=agent.base)
    try:
        again.start()
        assert dead_letters(again) == [letter]
        assert len(delivered_tags(receiver)) == 599  # nothing sent twice, the dead letter not sent at all
        assert again.ctl("discard", "cdr", "no-such-id").returncode == 1
        done = again.ctl("discard", "cdr", letter["id"])
        assert done.returncode == 0 and letter["id"] in done.stdout
        assert dead_letters(again) == []
        wait_until(
            lambda: f"dead letter {letter['id']} discarded for good by uid {os.getuid()}" in again.log(),
            timeout=10,
            what="the discard logged with the uid",
        )
    finally:
        again.stop()


def test_a_receiver_that_refuses_everything_ends_in_the_backoff_alarm(make_agent, receiver):
    receiver.respond(400)
    agent = make_agent(
        [sink("cdr", receiver.url, dead_letter_after=2)],
        tuning={"initial_retry_backoff": 0.05, "max_retry_backoff": 0.8},
    )
    publish_tags(agent, 200)
    wait_until(lambda: agent.sink_status("cdr")["alarms"], timeout=30, what="the backoff alarm")
    held = len(dead_letters(agent))
    assert 1 <= held < 20  # a handful, not an emptied stream
    assert agent.sink_status("cdr")["backlog"] >= 200 - held - 1


def test_401_for_every_event_never_makes_dead_letters(make_agent, make_receiver):
    rx = make_receiver(username="u", password="right")
    agent = make_agent(
        [sink("cdr", rx.url, username="u", password="wrong", dead_letter_after=1)],
        tuning={"initial_retry_backoff": 0.02, "max_retry_backoff": 0.2},
    )
    publish_tags(agent, 20)
    wait_until(lambda: len([r for r in rx.requests if r.status == 401]) >= 5, timeout=20, what="refusals")
    assert dead_letters(agent) == [] and agent.metric("eventsink_dead_letters_total", sink="cdr") == 0


def test_by_default_a_poison_event_blocks_the_sink_as_before(make_agent, receiver):
    receiver.reject_events(refuse_poison)
    agent = make_agent([sink("cdr", receiver.url)], tuning={"initial_retry_backoff": 0.02, "max_retry_backoff": 60})
    publish_tags(agent, 600)
    wait_until(lambda: len([r for r in receiver.requests if r.status == 400]) >= 6, timeout=30, what="retries")
    assert delivered_tags(receiver) == [f"e-{i}" for i in range(500)]  # nothing after the poison event
    assert dead_letters(agent) == []
    wait_until(lambda: agent.sink_status("cdr")["backlog"] == 100, timeout=10, what="e-500 on held")


def test_a_bulk_replay_after_a_split_re_forms_the_halves_not_the_refused_whole(make_agent, receiver):
    """The halves of a refused bulk envelope are envelopes of their own (their records replace the
    whole's): a replay re-sends each delivered half under its id with the same events, and a
    receiver deduplicating on webhook-id stores every event but the poison one exactly once."""
    receiver.reject_events(refuse_poison)
    agent = make_agent(
        [sink("cdr", receiver.url, dead_letter_after=3, bulk=True, bulk_max_events=64, bulk_interval=0.05)],
        tuning=FAST_RETRIES,
    )
    publish_tags(agent, 1000)
    wait_until(lambda: len(delivered_tags(receiver)) == 999, timeout=60, what="999 events")
    [letter] = wait_until(lambda: dead_letters(agent), timeout=10, what="the dead letter listed")
    first = {r.headers["webhook-id"] for r in receiver.requests if r.status == 200}
    before = len(receiver.requests)
    refused = {r.headers["webhook-id"] for r in receiver.requests if r.status == 400}
    assert len(refused) > 1  # the whole, its halves down to the poison event alone
    done = agent.ctl("replay", "cdr", "--since", "2h")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: len(delivered_tags(receiver)) >= 2 * 999, timeout=60, what="the replay")
    stored, broken, repeats = dedupe_bulk(receiver.requests)
    assert broken == [], broken[:5]
    tags = [
        json.loads(data)["tag"] for events in stored.values() for name, data in events if name == "conference_updated"
    ]
    assert sorted(tags) == sorted(f"e-{i}" for i in range(1000) if i != 500)
    again = {r.headers["webhook-id"] for r in receiver.requests if r.status == 200} - first
    assert all("-started-" in wid for wid in again)  # nothing new but the replaying worker's own start
    assert repeats == len([w for w in first if "-started-" not in w])
    # the refused whole is never re-formed: only the poison event's own envelope is refused again
    refused_again = {r.headers["webhook-id"] for r in receiver.requests[before:] if r.status == 400}
    assert refused_again <= {letter["id"] + "+1"} and letter["id"] + "+1" in refused

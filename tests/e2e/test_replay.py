"""Replay with real processes: retained events go out again, as first delivered.

A replay restarts the sink's publisher (`eventsink_started` at seq 1) and sends
every retained event accepted at or after TIME again, in journal order, with
the `webhook-id` of its first delivery; version 1 merges media streams into
`participant_disconnected` exactly as it did the first time."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.e2e.harness import CONF, media, participant, sink
from tests.helpers import dedupe_bulk, wait_until

pytestmark = pytest.mark.e2e


def publish_calls(pub, n_events: int, start: int = 0) -> None:
    """N_EVENTS journal events: calls of connect, disconnect, media streams (merged by version 1)."""
    for i in range(start, start + n_events):
        uuid = f"p-{i // 3}"
        kind = i % 3
        if kind == 0:
            pub.publish("participant_connected", participant(uuid))
        elif kind == 1:
            pub.publish("participant_disconnected", participant(uuid, disconnect_reason="Call disconnected"))
        else:
            pub.publish("participant_media_streams_destroyed", media(uuid))
    assert pub.flush(timeout=30)


def delivered(rx) -> list[tuple[str, str, dict]]:
    """(webhook-id, event, data) of each 2xx POST, in arrival order."""
    out = []
    for req in list(rx.requests):
        if 200 <= req.status < 300:
            body = json.loads(req.body)
            out.append((req.headers["webhook-id"], body["event"], body["data"], body["seq"]))
    return out


def settled(agent, *names) -> bool:
    sinks = {s["name"]: s for s in agent.status()["sinks"]}
    return all(sinks[n]["backlog"] == 0 and sinks[n]["in_flight"] == 0 for n in names)


def test_replay_sends_10000_events_again_as_first_delivered_to_v1_and_v2(make_agent, make_receiver):
    rx1, rx2 = make_receiver(), make_receiver()
    agent = make_agent(
        [sink("v1", rx1.url, version=1), sink("v2", rx2.url, version=2)],
        tuning={"media_streams_wait": 5.0, "max_background_posts": 50_000},
    )
    since = time.time() - 1
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        publish_calls(pub, 10_000)
    wait_until(lambda: settled(agent, "v1", "v2") and len(delivered(rx2)) == 10_001, timeout=60, what="first delivery")
    first = {name: delivered(rx) for name, rx in (("v1", rx1), ("v2", rx2))}
    assert len(first["v1"]) == 1 + sum(1 for i in range(10_000) if i % 3 != 2)  # media streams merged

    dry = agent.ctl("replay", "v1", "--since", str(since), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    answer = json.loads(dry.stdout)
    assert answer["events"] == 10_000 and answer["oldest_retained"] is not None and answer["dry_run"] is True
    assert len(delivered(rx1)) == len(first["v1"])  # a dry run sends nothing

    for name in ("v1", "v2"):
        done = agent.ctl("replay", name, "--since", "2h")
        assert done.returncode == 0 and "replaying 10000 events" in done.stdout, done.stdout + done.stderr
    for name, rx in (("v1", rx1), ("v2", rx2)):
        n = len(first[name])
        wait_until(lambda: len(delivered(rx)) >= 2 * n, timeout=60, what=f"replay to {name}")
        again = delivered(rx)[n:]
        assert again[0][1] == "eventsink_started" and again[0][3] == 1
        assert [(w, e, d) for w, e, d, _ in again[1:]] == [(w, e, d) for w, e, d, _ in first[name][1:]]
        assert [s for *_, s in again] == list(range(1, n + 1))
    assert all(s["alarms"] == [] and s["state"] == "running" for s in agent.status()["sinks"])


def journal_envelopes(rx) -> tuple[list[tuple[str, str]], list[str], int, int]:
    """A receiver deduplicating on webhook-id: (the journal events it stores, what is wrong, repeated
    POSTs, envelopes of journal events stored)."""
    stored, broken, repeats = dedupe_bulk(rx.requests)
    journal = [events for events in stored.values() if not events[0][0].startswith("eventsink_")]
    return [e for events in journal for e in events], broken, repeats, len(journal)


def journal_events_received(rx) -> int:
    """Journal events in every 2xx bulk POST, repeats included."""
    return sum(
        sum(1 for e in json.loads(req.body)["data"] if not e["event"].startswith("eventsink_"))
        for req in list(rx.requests)
        if 200 <= req.status < 300
    )


def test_a_bulk_replay_re_forms_every_envelope_under_its_webhook_id(make_agent, make_receiver):
    """Bulk sinks (v1 merges media streams, v2 sends them before the disconnect): a replay re-sends
    each envelope with the same events in the same order under the same webhook-id, so a receiver
    deduplicating on it stores every event exactly once."""
    rx1, rx2 = make_receiver(), make_receiver()
    bulk = {"bulk": True, "bulk_max_events": 7, "bulk_interval": 0.05}
    agent = make_agent(
        [sink("v1", rx1.url, version=1, **bulk), sink("v2", rx2.url, version=2, **bulk)],
        tuning={"media_streams_wait": 5.0, "max_background_posts": 50_000},
    )
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        publish_calls(pub, 1500)
    expected = {"v1": 1000, "v2": 1500}  # version 1: 500 media messages merged into their disconnects
    rxs = {"v1": rx1, "v2": rx2}
    wait_until(
        lambda: settled(agent, "v1", "v2") and all(len(journal_envelopes(rxs[n])[0]) == expected[n] for n in rxs),
        timeout=60,
        what="first delivery",
    )
    first = {n: journal_envelopes(rx)[3] for n, rx in rxs.items()}
    for name in rxs:
        done = agent.ctl("replay", name, "--since", "2h")
        assert done.returncode == 0 and "replaying 1500 events" in done.stdout, done.stdout + done.stderr
    for name, rx in rxs.items():
        wait_until(
            lambda: journal_events_received(rx) >= 2 * expected[name] and settled(agent, name),
            timeout=60,
            what=f"the replay to {name}",
        )
        kept, broken, repeats, envelopes = journal_envelopes(rx)
        assert broken == [], broken[:5]
        assert repeats == first[name] == envelopes  # every envelope again, under its id, and no new one
        assert len(kept) == len(set(kept)) == expected[name]
    merged = [d for e, d in journal_envelopes(rx1)[0] if e == "participant_disconnected"]
    assert len(merged) == 500 and all('"media_streams": [{' in d for d in merged)


def test_a_replay_window_that_starts_in_the_middle(make_agent, receiver):
    agent = make_agent([sink("cdr", receiver.url)])
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        for i in range(200):
            pub.publish("conference_updated", {**CONF, "tag": f"early-{i}"})
        assert pub.flush(timeout=10)
        wait_until(lambda: settled(agent, "cdr") and len(delivered(receiver)) == 201, timeout=30, what="early events")
        time.sleep(0.05)  # acceptance times are wall-clock seconds: the window must fall between two batches
        middle = time.time()
        time.sleep(0.05)
        for i in range(300):
            pub.publish("conference_updated", {**CONF, "tag": f"late-{i}"})
        assert pub.flush(timeout=10)
    wait_until(lambda: settled(agent, "cdr") and len(delivered(receiver)) == 501, timeout=30, what="late events")
    code, body = agent.client().call("POST", "/v1/sinks/cdr/replay", {"since": middle})
    assert code == 200 and body["events"] == 300 and body["dry_run"] is False
    wait_until(lambda: len(delivered(receiver)) == 501 + 301, timeout=30, what="the replayed window")
    again = delivered(receiver)[501:]
    assert again[0][1] == "eventsink_started"
    assert [d["tag"] for _, _, d, _ in again[1:]] == [f"late-{i}" for i in range(300)]
    # An ISO 8601 TIME and the live stream after the replay.
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    code, body = agent.client().call("POST", "/v1/sinks/cdr/replay", {"since": iso, "dry_run": True})
    assert code == 200 and body["events"] == 0


def test_bad_replay_requests_are_one_plain_line(make_agent, receiver):
    agent = make_agent([sink("cdr", receiver.url)])
    for args in (["replay", "cdr", "--since", "yesterday"], ["replay", "cdr", "--since", "-3"]):
        done = agent.ctl(*args)
        assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr and "TIME" in done.stderr
    assert agent.ctl("replay", "nope", "--since", "1h").returncode == 1
    assert agent.ctl("replay", "cdr").returncode == 2  # --since is required: a usage error
    for body in ({"since": "soon"}, {"since": True}, {}, {"since": 1, "dry_run": "yes"}):
        code, answer = agent.client().call("POST", "/v1/sinks/cdr/replay", body)
        assert code == 400 and set(answer) == {"error"}, (body, answer)
    assert agent.client().call("POST", "/v1/sinks/nope/replay", {"since": 0})[0] == 404


def test_kill_9_of_the_worker_in_the_middle_of_a_replay_loses_nothing(make_agent, make_receiver):
    rx = make_receiver()
    agent = make_agent([sink("cdr", rx.url)], tuning={"max_background_posts": 50_000})
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        for i in range(3000):
            pub.publish("conference_updated", {**CONF, "tag": f"e-{i}"})
        assert pub.flush(timeout=20)
    wait_until(lambda: settled(agent, "cdr") and len(delivered(rx)) == 3001, timeout=60, what="first delivery")
    rx.respond(200, delay=0.002)  # slow enough that the kill lands mid-replay
    code, body = agent.client().call("POST", "/v1/sinks/cdr/replay", {"since": 0})
    assert code == 200 and body["events"] == 3000
    wait_until(lambda: len(delivered(rx)) >= 3001 + 500, timeout=60, what="replay under way")
    pid = agent.sink_status("cdr")["pid"]
    os.kill(pid, signal.SIGKILL)
    rx.respond(200)
    wait_until(lambda: agent.sink_status("cdr")["pid"] not in (None, pid), timeout=30, what="a new worker")
    wait_until(lambda: settled(agent, "cdr"), timeout=60, what="the replay to finish")
    posts = delivered(rx)[3001:]
    starts = [i for i, (_, e, _, _) in enumerate(posts) if e == "eventsink_started"]
    assert len(starts) == 2 and starts[0] == 0  # the replaying worker, then the one after the kill
    runs = [[int(d["tag"][2:]) for _, _, d, _ in part] for part in (posts[1 : starts[1]], posts[starts[1] + 1 :])]
    for run in runs:
        assert run == sorted(run) and len(set(run)) == len(run)  # journal order within each worker
    assert runs[0][0] == 0 and runs[1][-1] == 2999
    assert runs[1][0] <= runs[0][-1] + 1  # the second worker starts where the first had got to, or before

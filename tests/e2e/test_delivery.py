"""End to end: Publisher -> broker -> journal -> worker -> POST to a real receiver."""

import base64
import re
import time

import pytest

from tests.e2e.harness import CONF, media, participant, sink
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def names(events):
    return [e["event"] for e in events]


def test_envelope_seq_auth_and_passthrough(make_agent, make_receiver):
    rx = make_receiver(username="cdr-user", password="S3cret-pass")
    agent = make_agent([sink("cdr", rx.url, username="cdr-user", password="S3cret-pass")])
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        pub.publish("conference_started", {**CONF, "x_custom": {"nested": [1, 2.5, None]}}, time=1700000000.25)
        pub.publish("participant_connected", participant("p-1", connect_time=None), time=1700000001.5)
        pub.publish("conference_updated", {**CONF, "is_locked": True}, time=1700000002.0)
        assert rx.wait_events(4, timeout=10), rx.events

    evs = rx.events
    assert names(evs) == ["eventsink_started", "conference_started", "participant_connected", "conference_updated"]
    assert [e["seq"] for e in evs] == [1, 2, 3, 4]
    assert all(set(e) == {"node", "seq", "version", "time", "event", "data"} for e in evs)
    assert all(e["node"] == "10.44.99.2" and e["version"] == 2 for e in evs)
    assert evs[0]["data"] == {}
    assert evs[1]["time"] == 1700000000.25 and evs[2]["time"] == 1700000001.5
    assert evs[1]["data"] == {**CONF, "x_custom": {"nested": [1, 2.5, None]}}
    assert evs[2]["data"] == participant("p-1", connect_time=None)

    posts = [r for r in rx.requests if r.status == 200]
    expected_auth = "Basic " + base64.b64encode(b"cdr-user:S3cret-pass").decode()
    for r in posts:
        assert r.method == "POST"
        assert r.headers["authorization"] == expected_auth
        assert r.headers["content-type"] == "application/json"
        assert re.fullmatch(r"eventsink-agent/\d+\.\d+\.\d+.*", r.headers["user-agent"])
        assert r.headers["webhook-id"]
    ids = [r.headers["webhook-id"] for r in posts]
    assert len(set(ids)) == len(ids)
    assert not rx.problems

    # The password is nowhere an operator or a scraper can see.
    status_text = str(agent.status())
    assert "S3cret-pass" not in status_text and "cdr-user:" not in status_text
    assert "S3cret-pass" not in agent.metrics()
    assert agent.stop() == 0
    assert "S3cret-pass" not in agent.log()


def test_versions_media_streams_and_independent_seq(make_agent, make_receiver):
    rx1, rx2 = make_receiver(), make_receiver()
    agent = make_agent(
        [sink("v1", rx1.url, version=1), sink("v2", rx2.url, version=2)],
        tuning={"media_streams_wait": 1.0, "cache_expiration": 2.0},
    )
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        pub.publish("participant_connected", participant("a"))
        pub.publish(
            "participant_media_stream_window", {"uuid": "a", "call_quality_was": "1_good", "call_quality_now": "3_bad"}
        )
        # media streams after the disconnect
        pub.publish("participant_disconnected", participant("a", disconnect_reason="Call disconnected", duration=12.5))
        pub.publish("participant_media_streams_destroyed", media("a"))
        # media streams before the disconnect
        pub.publish("participant_media_streams_destroyed", media("b"))
        pub.publish("participant_disconnected", participant("b", disconnect_reason="Call disconnected"))
        pub.publish("conference_ended", {**CONF, "end_time": 1700000100.0})
        assert rx2.wait_events(8, timeout=10), names(rx2.events)
        assert rx1.wait_events(5, timeout=10), names(rx1.events)

    v2 = names(rx2.events)
    assert v2[0] == "eventsink_started"
    for uuid in ("a", "b"):
        i = next(
            i
            for i, e in enumerate(rx2.events)
            if e["event"] == "participant_disconnected" and e["data"]["uuid"] == uuid
        )
        before = rx2.events[i - 1]
        assert before["event"] == "participant_media_streams_destroyed" and before["data"]["uuid"] == uuid
        assert before["seq"] + 1 == rx2.events[i]["seq"]
        assert "media_streams" not in rx2.events[i]["data"]
    assert "participant_media_stream_window" in v2
    assert [e["seq"] for e in rx2.events] == list(range(1, len(rx2.events) + 1))

    v1 = rx1.events
    assert not {"participant_media_stream_window", "participant_media_streams_destroyed"} & set(names(v1))
    for uuid in ("a", "b"):
        disc = next(e for e in v1 if e["event"] == "participant_disconnected" and e["data"]["uuid"] == uuid)
        assert disc["data"]["media_streams"] == media(uuid)["media_streams"]
        assert disc["version"] == 1
    assert [e["seq"] for e in v1] == list(range(1, len(v1) + 1))  # independent of v2's counter
    assert len(v1) == 5 and len(rx2.events) == 8


def test_disconnect_held_for_media_streams_wait(make_agent, receiver):
    agent = make_agent([sink("cdr", receiver.url)], tuning={"media_streams_wait": 1.5})
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        receiver.wait_events(1)
        t0 = time.monotonic()
        pub.publish("participant_disconnected", participant("lonely", disconnect_reason="Call disconnected"))
        pub.publish("conference_updated", CONF)
        assert receiver.wait_for(lambda r: any(e["event"] == "participant_disconnected" for e in r.events), timeout=10)
    got = next(r for r in receiver.requests if b"participant_disconnected" in r.body)
    held = got.t - t0
    assert 1.3 <= held <= 4.0, held
    # the conference event published after it was not held behind it
    assert names(receiver.events)[1:] == ["conference_updated", "participant_disconnected"]
    assert "media_streams" not in receiver.events[-1]["data"]


def test_location_role_and_event_filters(make_agent, make_receiver):
    rx_all, rx_filtered, rx_elsewhere = make_receiver(), make_receiver(), make_receiver()
    agent = make_agent(
        [
            sink("all", rx_all.url),
            sink("only-conf", rx_filtered.url, events=["conference_started", "conference_ended"]),
            {"name": "london", "url": rx_elsewhere.url, "locations": ["London"]},
        ]
    )
    assert sorted(s["name"] for s in agent.status()["sinks"]) == ["all", "only-conf"]
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        pub.publish("conference_started", CONF)
        pub.publish("participant_connected", participant("p"))
        pub.publish("conference_ended", CONF)
        assert rx_all.wait_events(4)
        assert rx_filtered.wait_events(3)
    assert names(rx_filtered.events) == ["eventsink_started", "conference_started", "conference_ended"]
    assert [e["seq"] for e in rx_filtered.events] == [1, 2, 3]
    assert rx_elsewhere.requests == []


def test_proxying_node_sends_only_lifecycle_events(make_agent, receiver):
    agent = make_agent([sink("cdr", receiver.url, version=1)], node={"role": "proxying"})
    with agent.publisher() as pub:
        agent.bus_ready(pub)
        pub.publish("conference_started", CONF)
        pub.publish("participant_connected", participant("p"))
        # the events are journaled, and the sink's cursor passes them without a POST
        wait_until(lambda: agent.status()["bus"]["received"] >= 2, what="events journaled")
        wait_until(lambda: agent.sink_status("cdr")["backlog"] == 0, what="backlog 0")
    assert agent.stop() == 0
    assert names(receiver.events) == ["eventsink_started", "eventsink_stopped"]


def test_any_zeromq_pub_socket_sending_the_two_frames_works(make_agent, receiver):
    """The frames are the contract, not the Publisher class: a bare pyzmq PUB socket works."""
    import orjson
    import zmq

    agent = make_agent([sink("cdr", receiver.url)])
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 2000)
    pub.connect(agent.publish_endpoint)
    try:
        before = agent.bus_rejected("unknown_event")

        def subscribed():  # the slow joiner: probe until the broker counts one
            pub.send_multipart([b"probe", b"{}"])
            return agent.bus_rejected("unknown_event") > before

        wait_until(subscribed, interval=0.1, what="the broker to see the bare PUB socket")
        body = {"event": "conference_started", "time": 1700000000, "data": {"name": "Bare", "tag": "zmq"}}
        pub.send_multipart([b"conference_started", orjson.dumps(body)])
        assert receiver.wait_events(2)
    finally:
        pub.close()
        ctx.term()
    ev = receiver.events[1]
    assert (ev["event"], ev["time"], ev["data"]) == ("conference_started", 1700000000, {"name": "Bare", "tag": "zmq"})

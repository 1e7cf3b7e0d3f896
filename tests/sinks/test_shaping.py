"""Shaping: seq, filters, the media-stream cache (v1 merge, v2 order), bulk batching; fake clock."""

import json

import orjson
import pytest

from common.vocabulary import stop_event
from sinks import envelope
from sinks.post import Post
from sinks.shaping import Batcher, Shaper, ShapeSettings, wrap

EPOCH = "00112233aabbccdd"


def settings(version=2, role_proxying=False, events=(), wait=1.0, expiration=2.0):
    return ShapeSettings(
        node=envelope.json_string("10.0.0.9"),
        version=version,
        proxying=role_proxying,
        events=frozenset(events),
        media_streams_wait=wait,
        cache_expiration=expiration,
    )


class Rig:
    def __init__(self, **kw):
        self.posts: list[Post] = []
        self.discarded: list[int] = []
        self.shaper = Shaper(settings(**kw), EPOCH, "cdr", self.posts.append, self.discarded.append)
        self.offset = 0

    def offer(self, event, data, now, time_=1700000000.5):
        self.offset += 1
        self.shaper.offer(self.offset, orjson.dumps({"event": event, "time": time_, "data": data}), now)
        return self.offset

    def docs(self):
        return [json.loads(p.body) for p in self.posts]

    def names(self):
        return [p.event for p in self.posts]


def test_seq_counts_every_event_entering_the_send_order_and_lifecycle_first():
    rig = Rig()
    started = rig.shaper.lifecycle("eventsink_started", now=0.0, wall=1700000000.0)
    rig.posts.append(started)
    rig.offer("conference_started", {"name": "c", "x_unknown": [1]}, 0.0)
    rig.offer("conference_updated", {"name": "c"}, 0.0)
    docs = rig.docs()
    assert [d["seq"] for d in docs] == [1, 2, 3]
    assert docs[0] == {
        "node": "10.0.0.9",
        "seq": 1,
        "version": 2,
        "time": 1700000000.0,
        "event": "eventsink_started",
        "data": {},
    }
    assert docs[1]["data"] == {"name": "c", "x_unknown": [1]} and docs[1]["time"] == 1700000000.5
    assert rig.posts[1].webhook_id == f"{EPOCH}-1" and rig.posts[1].offsets == (1,)
    assert started.webhook_id.startswith(f"{EPOCH}-cdr-started-") and started.offsets == ()


def test_proxying_sends_no_conference_or_participant_events():
    rig = Rig(role_proxying=True)
    for name, data in (
        ("conference_started", {"name": "c"}),
        ("participant_connected", {"uuid": "p"}),
        ("participant_disconnected", {"uuid": "p"}),
        ("participant_media_streams_destroyed", {"uuid": "p"}),
    ):
        rig.offer(name, data, 0.0)
    rig.shaper.expire(100.0)
    assert rig.posts == [] and rig.discarded == [1, 2, 3, 4]


def test_events_filter_only_lets_the_listed_events_through():
    rig = Rig(events=["conference_started", "participant_disconnected"])
    rig.offer("conference_started", {"name": "c"}, 0.0)
    rig.offer("conference_updated", {"name": "c"}, 0.0)
    rig.offer("participant_media_streams_destroyed", {"uuid": "p", "media_streams": []}, 0.0)
    rig.offer("participant_disconnected", {"uuid": "p"}, 0.0)
    # v2 without the media event in the list: the disconnect is not held for it
    assert rig.names() == ["conference_started", "participant_disconnected"]
    assert rig.discarded == [2, 3]


def test_version_1_never_gets_the_media_events():
    rig = Rig(version=1)
    rig.offer("participant_media_stream_window", {"uuid": "p"}, 0.0)
    media = rig.offer("participant_media_streams_destroyed", {"uuid": "p", "media_streams": [{"stream_id": "0"}]}, 0.0)
    rig.shaper.expire(1.9)
    assert rig.posts == [] and rig.discarded == [1]
    rig.shaper.expire(2.0)  # its disconnect never came: a v1 media message is done without a POST
    assert rig.posts == [] and rig.discarded == [1, media]


@pytest.mark.parametrize("media_first", [False, True])
def test_version_2_media_streams_go_immediately_before_the_disconnect(media_first):
    rig = Rig()
    streams = {"uuid": "p", "media_streams": [{"stream_id": "0", "rx_bitrate": 64}]}
    if media_first:
        m = rig.offer("participant_media_streams_destroyed", streams, 0.0)
        rig.offer("conference_updated", {"name": "between"}, 0.1)
        d = rig.offer("participant_disconnected", {"uuid": "p", "duration": 3.0}, 0.2)
    else:
        d = rig.offer("participant_disconnected", {"uuid": "p", "duration": 3.0}, 0.0)
        rig.offer("conference_updated", {"name": "between"}, 0.1)
        m = rig.offer("participant_media_streams_destroyed", streams, 0.2)
    docs = rig.docs()
    assert [d_["event"] for d_ in docs] == [
        "conference_updated",
        "participant_media_streams_destroyed",
        "participant_disconnected",
    ]
    assert [d_["seq"] for d_ in docs] == [1, 2, 3]
    assert docs[1]["data"] == streams and "media_streams" not in docs[2]["data"]
    assert rig.posts[1].offsets == (m,) and rig.posts[2].offsets == (d,)
    assert rig.shaper.held == 0


@pytest.mark.parametrize("media_first", [False, True])
def test_version_1_merges_media_streams_into_the_disconnect(media_first):
    rig = Rig(version=1)
    streams = [{"stream_id": "0", "rx_packet_loss": 0.0}]
    if media_first:
        m = rig.offer("participant_media_streams_destroyed", {"uuid": "p", "media_streams": streams}, 0.0)
        d = rig.offer("participant_disconnected", {"uuid": "p", "disconnect_reason": "bye", "x_new": 1}, 0.5)
    else:
        d = rig.offer("participant_disconnected", {"uuid": "p", "disconnect_reason": "bye", "x_new": 1}, 0.0)
        m = rig.offer("participant_media_streams_destroyed", {"uuid": "p", "media_streams": streams}, 0.5)
    docs = rig.docs()
    assert len(docs) == 1 and docs[0]["event"] == "participant_disconnected" and docs[0]["version"] == 1
    assert docs[0]["data"] == {"uuid": "p", "disconnect_reason": "bye", "x_new": 1, "media_streams": streams}
    assert rig.posts[0].offsets == (d, m) and rig.posts[0].webhook_id == f"{EPOCH}-{d}"


def test_disconnect_is_held_media_streams_wait_then_sent_alone_while_others_flow():
    rig = Rig(wait=1.5)
    rig.offer("participant_disconnected", {"uuid": "lonely"}, 10.0)
    rig.offer("conference_updated", {"name": "c"}, 10.1)
    assert rig.names() == ["conference_updated"]
    assert rig.shaper.next_deadline() == 11.5
    rig.shaper.expire(11.49)
    assert rig.names() == ["conference_updated"]
    rig.shaper.expire(11.5)
    assert rig.names() == ["conference_updated", "participant_disconnected"]
    assert "media_streams" not in rig.docs()[1]["data"] and rig.shaper.next_deadline() is None
    # a media message arriving after the wait is held for cache_expiration, then (v2) sent alone
    rig.offer("participant_media_streams_destroyed", {"uuid": "lonely", "media_streams": []}, 12.0)
    rig.shaper.expire(13.9)
    assert len(rig.posts) == 2
    rig.shaper.expire(14.0)
    assert rig.names()[-1] == "participant_media_streams_destroyed"
    assert [d["seq"] for d in rig.docs()] == [1, 2, 3]


def test_a_second_disconnect_for_the_same_uuid_releases_the_first():
    rig = Rig()
    rig.offer("participant_disconnected", {"uuid": "p", "n": 1}, 0.0)
    rig.offer("participant_disconnected", {"uuid": "p", "n": 2}, 0.1)
    assert [d["data"]["n"] for d in rig.docs()] == [1]
    rig.offer("participant_media_streams_destroyed", {"uuid": "p", "media_streams": []}, 0.2)
    assert rig.names() == [
        "participant_disconnected",
        "participant_media_streams_destroyed",
        "participant_disconnected",
    ]


def test_bad_payload_is_counted_and_done():
    rig = Rig()
    rig.shaper.offer(1, b"garbage", 0.0)
    assert rig.discarded == [1] and rig.shaper.bad_payloads == 1 and rig.posts == []


def test_drop_held_forgets_held_events():
    rig = Rig()
    rig.offer("participant_disconnected", {"uuid": "p"}, 0.0)
    assert rig.shaper.held == 1
    rig.shaper.drop_held()
    assert rig.shaper.held == 0
    rig.shaper.expire(100.0)
    assert rig.posts == [] and rig.discarded == []


def test_stop_event_names_per_version():
    assert stop_event(1) == "eventsink_stopped" and stop_event(2) == "eventsink_ended"


def test_batcher_flushes_when_full_or_when_the_oldest_waited():
    out: list[Post] = []
    rig = Rig()
    batcher = Batcher(max_events=3, interval=1.0, version=2, emit=out.append)
    for i in range(4):
        rig.offer("conference_updated", {"name": f"c{i}"}, now=5.0 + i * 0.1)
    for p in rig.posts:
        batcher.add(p)
    assert len(out) == 1 and len(batcher) == 1
    bulk = json.loads(out[0].body)
    assert bulk["event"] == "eventsink_bulk" and bulk["seq"] == 0 and bulk["node"] == "127.0.0.1"
    assert [e["seq"] for e in bulk["data"]] == [1, 2, 3]
    assert out[0].webhook_id == f"{EPOCH}-1+3" and out[0].offsets == (1, 2, 3) and out[0].count == 3
    assert batcher.next_deadline() == pytest.approx(6.3)
    batcher.tick(6.29)
    assert len(out) == 1
    batcher.tick(6.3)
    assert len(out) == 2 and out[1].webhook_id == f"{EPOCH}-4+1" and len(batcher) == 0


def test_wrap_keeps_inner_envelopes_byte_for_byte():
    rig = Rig()
    rig.offer("conference_updated", {"name": "a", "n": 1.50}, 0.0)
    bulk = wrap(rig.posts, 2, wall=1700000000.0)
    assert rig.posts[0].body in bulk.body


def test_with_unread_events_a_hold_lasts_until_later_published_events_are_read():
    rig = Rig(wait=1.0)
    rig.offer("participant_disconnected", {"uuid": "p"}, now=0.0, time_=100.0)
    rig.offer("conference_updated", {"name": "c"}, now=0.1, time_=100.5)
    rig.shaper.expire(5.0, read_all=False)  # the clock says over, but its partner may be unread
    assert rig.names() == ["conference_updated"]
    rig.offer("conference_updated", {"name": "c"}, now=5.1, time_=101.0)
    rig.shaper.expire(5.1, read_all=False)  # events published a wait later are read: give up
    assert rig.names() == ["conference_updated", "conference_updated", "participant_disconnected"]
    rig.offer("participant_disconnected", {"uuid": "q"}, now=6.0, time_=102.0)
    rig.shaper.expire(7.0, read_all=True)  # everything read: only the clock counts
    assert rig.names()[-1] == "participant_disconnected" and rig.shaper.held == 0


def test_lifecycle_takes_its_time_and_id_from_what_was_handed_in():
    """The shaper is pure: the wall clock and the id source of lifecycle events are injected."""
    posts = []
    shaper = Shaper(
        settings(),
        EPOCH,
        "cdr",
        posts.append,
        lambda offset: None,
        wall_clock=lambda: 1700000000.0,
        new_id=lambda: "fixed",
    )
    started = shaper.lifecycle("eventsink_started", now=0.0)
    assert started.webhook_id == f"{EPOCH}-cdr-started-fixed"
    assert b"1700000000" in started.body

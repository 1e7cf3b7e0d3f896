"""The Publisher client: the exact frames it sends, readiness, and what it keeps
while the agent is not subscribed (before it starts, after it unsubscribes, when
ZeroMQ's queue is full): kept in order, bounded by buffer_max, sent once the
agent subscribes; flush, close and the context manager."""

from __future__ import annotations

import time

import orjson
import pytest
import zmq

from bus.publisher import Publisher
from tests.helpers import short_tmpdir


@pytest.fixture
def endpoint():
    with short_tmpdir() as d:
        yield f"ipc://{d}/publish.sock"


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def bind_sub(ctx, endpoint, kind=zmq.SUB, rcvhwm: int = 1000):
    """The agent's side: a SUB subscribed to everything, or an XSUB that subscribes by sending frames."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    if kind == zmq.SUB:
        sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.bind(endpoint)
    if kind == zmq.XSUB:
        sock.send(b"\x01")
    return sock


@pytest.fixture
def sub(ctx, endpoint):
    return bind_sub(ctx, endpoint)


def while_touching(sub, step, timeout: float = 5.0) -> bool:
    """STEP() until True, while the SUB is touched: a ZeroMQ socket only sends its subscription when its
    owner uses it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sub.poll(0)
        if step():
            return True
    return False


def ready(pub: Publisher, sub) -> bool:
    return while_touching(sub, lambda: pub.wait_ready(0.05))


def flushed(pub: Publisher, sub) -> bool:
    return while_touching(sub, lambda: pub.flush(0.05))


def recv(sock, timeout_ms: int = 5000) -> list[bytes]:
    assert sock.poll(timeout_ms), "nothing received"
    return sock.recv_multipart()


def names(sock, n: int) -> list[str]:
    return [orjson.loads(recv(sock)[1])["data"]["name"] for _ in range(n)]


def nothing_more(sock, ms: int = 100) -> bool:
    return not sock.poll(ms)


def test_publish_sends_topic_and_json_envelope(endpoint, sub):
    with Publisher(endpoint) as pub:
        assert ready(pub, sub)
        before = time.time()
        pub.publish("participant_connected", {"uuid": "u1", "display_name": "Zoë"})
        pub.publish("conference_started", {"name": "m"}, time=1700000000.25)
        topic, payload, number = recv(sub)
        assert topic == b"participant_connected"
        assert number == pub.id + (1).to_bytes(8, "big")
        doc = orjson.loads(payload)
        assert set(doc) == {"event", "time", "data"}
        assert doc["event"] == "participant_connected" and doc["data"] == {"uuid": "u1", "display_name": "Zoë"}
        assert before - 1 <= doc["time"] <= time.time() + 1
        assert recv(sub) == [
            b"conference_started",
            b'{"event":"conference_started","time":1700000000.25,"data":{"name":"m"}}',
            pub.id + (2).to_bytes(8, "big"),
        ]
        assert pub.pending == 0 and pub.dropped == 0 and pub.resent == 0


def test_send_frames_passes_raw_frames(endpoint, sub):
    with Publisher(endpoint) as pub:
        assert ready(pub, sub)
        pub.send_frames([b"a", b"\xff", b"c"])
        assert recv(sub) == [b"a", b"\xff", b"c"]


def test_wait_ready_is_false_without_a_listener(endpoint):
    pub = Publisher(endpoint)
    assert pub.wait_ready(0.2) is False
    pub.publish("conference_started", {"name": "nobody listens"})  # never blocks, never raises
    assert pub.close(0) is False


def test_events_published_before_the_agent_exists_are_kept_and_sent_in_order(ctx, endpoint):
    pub = Publisher(endpoint)
    for i in range(500):
        pub.publish("conference_updated", {"name": f"c{i}"})
    assert pub.pending == 500 and pub.dropped == 0 and not pub.subscribed
    sub = bind_sub(ctx, endpoint)
    assert flushed(pub, sub)
    assert names(sub, 500) == [f"c{i}" for i in range(500)]
    assert nothing_more(sub)
    pub.close()


def test_more_than_buffer_max_drops_the_oldest_and_counts_them(ctx, endpoint):
    pub = Publisher(endpoint, buffer_max=10)
    for i in range(25):
        pub.publish("conference_updated", {"name": f"c{i}"})
    assert (pub.pending, pub.dropped) == (10, 15)
    sub = bind_sub(ctx, endpoint)
    assert flushed(pub, sub)
    assert names(sub, 10) == [f"c{i}" for i in range(15, 25)]
    assert nothing_more(sub)
    pub.close()


def test_after_the_agent_unsubscribes_events_are_kept_until_it_subscribes_again(ctx, endpoint):
    """The broker's graceful stop: it unsubscribes (an XSUB sends b"\\x00"), keeps reading, goes."""
    xsub = bind_sub(ctx, endpoint, zmq.XSUB)
    pub = Publisher(endpoint)
    assert ready(pub, xsub)
    pub.publish("conference_updated", {"name": "before"})
    assert names(xsub, 1) == ["before"]
    xsub.send(b"\x00")
    deadline = time.monotonic() + 5
    while pub.subscribed and time.monotonic() < deadline:
        _ = pub.pending  # reading it reads the unsubscribe
    assert not pub.subscribed
    for i in range(100):
        pub.publish("conference_updated", {"name": f"c{i}"})
    assert pub.pending == 100
    assert nothing_more(xsub), "sent to an agent that had unsubscribed"
    xsub.send(b"\x01")
    assert flushed(pub, xsub)
    # the ring first (the journal drops what it already holds), then what was kept
    assert names(xsub, 101) == ["before"] + [f"c{i}" for i in range(100)]
    assert pub.resent == 1
    pub.close()


def test_an_agent_that_goes_without_unsubscribing_gets_the_ring_again_then_what_was_kept(ctx, endpoint):
    """A broker killed with kill -9: libzmq unsubscribes its topics for us (the socket is IMMEDIATE:
    no queue is kept for a dead connection), so what follows is kept here, and the next broker
    gets the last events handed to ZeroMQ again, oldest first, before anything newer."""
    sub = bind_sub(ctx, endpoint)
    pub = Publisher(endpoint, resend_max=3)
    assert ready(pub, sub)
    for i in range(5):
        pub.publish("conference_updated", {"name": f"b{i}"})
    assert names(sub, 5) == [f"b{i}" for i in range(5)]
    sub.close()
    deadline = time.monotonic() + 5
    while pub.subscribed and time.monotonic() < deadline:
        _ = pub.pending  # reading it reads the unsubscriptions libzmq made for the dead connection
    assert not pub.subscribed
    for i in range(50):
        pub.publish("conference_updated", {"name": f"c{i}"})
    assert pub.pending == 50
    sub = bind_sub(ctx, endpoint)
    assert ready(pub, sub) and flushed(pub, sub)
    got = [recv(sub) for _ in range(53)]
    assert [orjson.loads(f[1])["data"]["name"] for f in got] == ["b2", "b3", "b4"] + [f"c{i}" for i in range(50)]
    assert [int.from_bytes(f[2][8:], "big") for f in got] == list(range(3, 56))  # the same numbers again
    assert all(f[2][:8] == pub.id for f in got) and pub.resent == 3
    pub.publish("conference_updated", {"name": "after"})
    assert names(sub, 1) == ["after"] and nothing_more(sub)
    pub.close()


def test_numbers_are_one_more_per_event_and_ids_differ_between_publishers(ctx, endpoint):
    sub = bind_sub(ctx, endpoint)
    one, two = Publisher(endpoint), Publisher(endpoint)
    assert ready(one, sub) and ready(two, sub)
    for i in range(3):
        one.publish("conference_updated", {"name": f"one{i}"})
    two.publish("conference_updated", {"name": "two0"})
    got = [recv(sub) for _ in range(4)]
    numbers = sorted((f[2][:8], int.from_bytes(f[2][8:], "big")) for f in got)
    assert one.id != two.id and len(one.id) == 8
    assert sorted(numbers) == sorted([(one.id, 1), (one.id, 2), (one.id, 3), (two.id, 1)])
    one.close()
    two.close()


def test_a_full_zeromq_queue_keeps_events_instead_of_dropping_them(ctx, endpoint):
    """XPUB_NODROP: past the high-water marks the Publisher keeps (and counts) instead of ZeroMQ dropping."""
    sub = bind_sub(ctx, endpoint, rcvhwm=10)
    pub = Publisher(endpoint, sndhwm=10)
    assert ready(pub, sub)
    sent = 0
    while pub.pending == 0 and sent < 200_000:  # the kernel's socket buffer fills first
        pub.publish("conference_updated", {"name": f"c{sent}", "pad": "x" * 1000})
        sent += 1
    assert pub.pending > 0, "ZeroMQ never pushed back"
    for i in range(sent, sent + 10):
        pub.publish("conference_updated", {"name": f"c{i}", "pad": "x" * 1000})
    sent += 10
    got = []
    deadline = time.monotonic() + 30
    while len(got) < sent and time.monotonic() < deadline:
        pub.flush(0)
        if sub.poll(10):
            got.append(orjson.loads(sub.recv_multipart()[1])["data"]["name"])
    assert got == [f"c{i}" for i in range(sent)] and pub.dropped == 0
    pub.close()


def test_close_delivers_queued_messages(endpoint, sub):
    pub = Publisher(endpoint)
    assert ready(pub, sub)
    for i in range(1000):
        pub.publish("conference_updated", {"name": f"c{i}"})
    assert pub.close() is True  # gives ZeroMQ the rest of its timeout to hand the queue over
    assert names(sub, 1000) == [f"c{i}" for i in range(1000)]


def test_close_without_an_agent_returns_within_its_timeout_and_says_what_was_kept(endpoint):
    pub = Publisher(endpoint)
    for i in range(3):
        pub.publish("conference_updated", {"name": f"c{i}"})
    started = time.monotonic()
    assert pub.close(0.3) is False
    assert 0.25 <= time.monotonic() - started < 2.0
    assert pub.pending == 3 and pub.dropped == 0
    assert pub.close() is False  # a second close is harmless


def test_context_manager_flushes_kept_events_on_exit(ctx, endpoint):
    with Publisher(endpoint) as pub:
        pub.publish("conference_updated", {"name": "early"})
        assert pub.pending == 1
        sub = bind_sub(ctx, endpoint)
        assert ready(pub, sub)  # wait_ready also sends what was kept
    assert names(sub, 1) == ["early"] and pub.pending == 0

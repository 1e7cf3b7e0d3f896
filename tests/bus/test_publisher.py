"""The Publisher client: the exact frames it sends, readiness, raw frames, closing."""

from __future__ import annotations

import shutil
import tempfile
import time

import orjson
import pytest
import zmq

from bus.publisher import Publisher


@pytest.fixture
def endpoint():
    d = tempfile.mkdtemp(prefix="esa-", dir="/tmp")
    yield f"ipc://{d}/publish.sock"
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def sub(endpoint):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    yield sock
    ctx.destroy(linger=0)


def ready(pub: Publisher, sub, timeout: float = 5.0) -> bool:
    """wait_ready, while the SUB is touched: a ZeroMQ socket only sends its subscription when its owner uses it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sub.poll(0)
        if pub.wait_ready(0.05):
            return True
    return False


def recv(sock, timeout_ms: int = 5000) -> list[bytes]:
    assert sock.poll(timeout_ms), "nothing received"
    return sock.recv_multipart()


def test_publish_sends_topic_and_json_envelope(endpoint, sub):
    with Publisher(endpoint) as pub:
        assert ready(pub, sub)
        before = time.time()
        pub.publish("participant_connected", {"uuid": "u1", "display_name": "Zoë"})
        pub.publish("conference_started", {"name": "m"}, time=1700000000.25)
        topic, payload = recv(sub)
        assert topic == b"participant_connected"
        doc = orjson.loads(payload)
        assert set(doc) == {"event", "time", "data"}
        assert doc["event"] == "participant_connected" and doc["data"] == {"uuid": "u1", "display_name": "Zoë"}
        assert before - 1 <= doc["time"] <= time.time() + 1
        assert recv(sub) == [b"conference_started", b'{"event":"conference_started","time":1700000000.25,"data":{"name":"m"}}']


def test_send_frames_passes_raw_frames(endpoint, sub):
    with Publisher(endpoint) as pub:
        assert ready(pub, sub)
        pub.send_frames([b"a", b"\xff", b"c"])
        assert recv(sub) == [b"a", b"\xff", b"c"]


def test_wait_ready_is_false_without_a_listener(endpoint):
    pub = Publisher(endpoint, linger_ms=0)
    assert pub.wait_ready(0.2) is False
    pub.publish("conference_started", {"name": "nobody listens"})  # never blocks, never raises
    pub.close()


def test_close_delivers_queued_messages(endpoint, sub):
    pub = Publisher(endpoint)
    assert ready(pub, sub)
    for i in range(1000):
        pub.publish("conference_updated", {"name": f"c{i}"})
    pub.close()  # lingers until queued messages are out
    names = [orjson.loads(recv(sub)[1])["data"]["name"] for _ in range(1000)]
    assert names == [f"c{i}" for i in range(1000)]

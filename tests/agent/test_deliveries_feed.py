"""The followers of GET /v1/deliveries?follow=1 (agent/server/deliveries_feed.py) and the control
server's streamed answer (agent/server/control_http.py `serve_stream`), over real socket pairs:

- a follower's queue is bounded: a client that does not read is dropped, and its stream ends;
- the feed tells a worker to stream when its sink is first followed, tells a new worker of
  that sink again, and tells it to stop once nobody follows; a streamed POST becomes one
  NDJSON line, with "sink", for each follower that wants that sink;
- serve_stream writes chunked lines as they come, ends with the last chunk when the stream
  ends, and returns (closing the stream) when the client goes.
"""

from __future__ import annotations

import json
import socket
import threading
from types import SimpleNamespace

import msgspec

from agent.server.control_http import serve_stream
from agent.server.deliveries_feed import DeliveryFeed, Follower
from common.internal import worker_identity
from common.link import DeliveriesStreamed, DeliveryEntry


class FakeLink:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, dict]] = []
        self.bad: list[str] = []

    def send(self, identity: bytes, msg: dict) -> bool:
        self.sent.append((identity, msg))
        return True

    def note_bad(self, identity: bytes, why: str) -> None:
        self.bad.append(why)


def fleet(*names: str) -> SimpleNamespace:
    sinks = {n: SimpleNamespace(name=n, pid=1000 + i) for i, n in enumerate(names)}
    return SimpleNamespace(link=FakeLink(), sinks=sinks)


def entry(seq: int) -> DeliveryEntry:
    return DeliveryEntry(
        at="2026-01-01T00:00:00.000Z",
        webhook_id=f"wh-{seq}",
        seq=seq,
        events=1,
        outcome="success",
        status=200,
        duration=0.01,
        headers={"webhook-id": f"wh-{seq}"},
        body=f'{{"seq":{seq}}}',
    )


def told(f: SimpleNamespace) -> list[tuple[str, bool]]:
    out = [(identity.decode(), msg["on"]) for identity, msg in f.link.sent]
    f.link.sent.clear()
    return out


def test_a_follower_that_does_not_read_is_dropped_and_its_stream_ends():
    ended = []
    follower = Follower(None, lambda: ended.append(True), max_queued=6)  # bytes
    for n in range(3):
        follower.offer(b"%d\n" % n)
    assert follower.take() == [b"0\n", b"1\n", b"2\n"] and not follower.dropped
    for _ in range(4):
        follower.offer(b"x\n")
    assert follower.dropped and follower.take() is None
    follower.close()
    follower.close()  # once only
    assert ended == [True] and follower.closed
    follower.offer(b"late\n")  # after close: ignored, nothing raised


def test_the_feed_tells_workers_on_again_for_a_new_worker_and_off():
    f = fleet("a", "b")
    feed = DeliveryFeed(f)
    assert feed.followers == [] and told(f) == []
    only_b = feed.follow("b", lambda: None)
    assert told(f) == [(worker_identity("b").decode(), True)]
    everything = feed.follow(None, lambda: None)
    assert told(f) == [(worker_identity("a").decode(), True)]  # b was told already
    feed.on_report(f.sinks["b"], SimpleNamespace(pid=1001, streaming=True))
    assert told(f) == []
    f.sinks["b"].pid = 2001  # b has a new worker: told on its first report
    feed.on_report(f.sinks["b"], SimpleNamespace(pid=2001, streaming=False))
    assert told(f) == [(worker_identity("b").decode(), True)]

    everything.close()
    feed.prune()
    assert told(f) == [(worker_identity("a").decode(), False)] and feed.followers == [only_b]
    feed.on_report(f.sinks["a"], SimpleNamespace(pid=1000, streaming=True))  # it missed the off
    assert told(f) == [(worker_identity("a").decode(), False)]
    only_b.close()
    feed.prune()
    assert told(f) == [(worker_identity("b").decode(), False)] and feed.followers == []
    feed.prune()
    feed.on_report(f.sinks["b"], SimpleNamespace(pid=2001, streaming=False))
    assert told(f) == []  # nobody follows: nothing is sent


def test_a_streamed_post_is_one_line_with_its_sink_for_each_follower_of_it():
    f = fleet("a", "b")
    feed = DeliveryFeed(f)
    everything, only_a, only_b = (
        feed.follow(None, lambda: None),
        feed.follow("a", lambda: None),
        feed.follow("b", lambda: None),
    )
    feed.streamed(worker_identity("a"), DeliveriesStreamed(sink="a", deliveries=[entry(1), entry(2)]))
    lines = everything.take()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2] and all(line.endswith(b"\n") for line in lines)
    assert json.loads(lines[0]) == {"sink": "a", **msgspec.to_builtins(entry(1))}
    assert only_a.take() == lines and only_b.take() == []
    feed.streamed(worker_identity("b"), DeliveriesStreamed(sink="a", deliveries=[entry(3)]))  # forged
    assert f.link.bad and everything.take() == [] and only_a.take() == []


def test_serve_stream_writes_chunks_as_they_come_and_ends_with_the_stream():
    server, client = socket.socketpair()
    follower = Follower(None, lambda: None)
    thread = threading.Thread(target=serve_stream, args=(server, follower), kwargs={"chunked": True})
    thread.start()
    follower.offer(b'{"n":1}\n')
    follower.offer(b'{"n":2}\n')
    got = b""
    client.settimeout(10)
    while b"".join(_chunks(got.partition(b"\r\n\r\n")[2])) != b'{"n":1}\n{"n":2}\n':  # one chunk or two
        data = client.recv(65536)
        assert data, got
        got += data
    head = got.partition(b"\r\n\r\n")[0]
    assert b"Content-Type: application/x-ndjson" in head and b"Transfer-Encoding: chunked" in head
    # A line longer than it may hold (3 bytes) waiting: dropped, and the stream ends on its side. One
    # line, not two short ones: the serving thread may take the first before the second is offered.
    follower._max = 3
    follower.offer(b"abcd\n")
    assert follower.dropped
    thread.join(timeout=10)
    assert not thread.is_alive() and follower.closed
    while not got.endswith(b"0\r\n\r\n"):
        data = client.recv(65536)
        assert data, got
        got += data
    client.close()
    server.close()


def _chunks(body: bytes) -> list[bytes]:
    out = []
    while b"\r\n" in body:
        size, rest = body.split(b"\r\n", 1)
        n = int(size, 16)
        if n == 0 or len(rest) < n + 2:
            break
        out.append(rest[:n])
        body = rest[n + 2 :]
    return out


def test_serve_stream_returns_when_the_client_goes():
    server, client = socket.socketpair()
    ended = []
    follower = Follower(None, lambda: ended.append(True))
    thread = threading.Thread(target=serve_stream, args=(server, follower), kwargs={"chunked": False})
    thread.start()
    client.settimeout(10)
    assert client.recv(65536).startswith(b"HTTP/1.1 200 OK")
    client.shutdown(socket.SHUT_RDWR)
    client.close()
    thread.join(timeout=10)
    assert not thread.is_alive() and follower.closed and ended == [True]
    server.close()

"""The worker's ring of POSTs as sent (sinks/deliveries.py): recorded by the Dispatcher for
every POST that ends, bounded at 100, kept as references and formatted (gunzipped, masked)
only when read; followed, it also lists what the next `stream` sends, and nothing otherwise."""

from __future__ import annotations

import msgspec
import zmq

from common import internal, link
from common.backoff import Backoff
from common.config_types import Config, NodeConfig, SinkConfig
from common.vocabulary import PostOutcome
from sinks import deliveries
from sinks.curl_options import gzip_body
from sinks.deliveries import RING_SIZE, DeliveryRing
from sinks.delivery import Dispatcher, Result
from sinks.post import Post
from tests.sinks.harness import FakeClient, pumped

PASSWORD, TOKEN, HEADER_VALUE, SIGNING = "pw-Rg81-topsecret", "tok-Rg9f8e", "hdr-Rg77", "whsec_c2VjcmV0LXJpbmc="


def post(seq: int, body: bytes = b"{}") -> Post:
    return Post(seq, "conference_updated", body, f"wh-{seq}", (seq,), (0.0,))


def config() -> Config:
    sink = SinkConfig(
        name="cdr",
        url="http://127.0.0.1:9/events",
        locations=["Oslo"],
        username="cdr",
        password=PASSWORD,
        bearer_token=TOKEN,
        headers={"X-Api-Key": HEADER_VALUE},
        secret=SIGNING,
    )
    return Config(node=NodeConfig(address="10.44.99.2", location="Oslo"), sink=[sink])


def sent(seq: int, body: bytes, *extra: str) -> Result:
    lines = [
        "Content-Type: application/json",
        "User-Agent: eventsink-agent/test",
        "Expect:",
        f"webhook-id: wh-{seq}",
        *extra,
    ]
    return Result(PostOutcome.SUCCESS, 200, 0.01, request=(lines, body))


def test_the_dispatcher_records_each_ended_post_with_the_request_it_was_given():
    d = Dispatcher("cdr", FakeClient(), Backoff(initial=0.01, maximum=100.0), 1, clock=lambda: 0.0)
    d.put(post(1, b'{"a":1}'))
    [attempt] = pumped(d, 0.0)
    failed = Result(PostOutcome.HTTP_ERROR, 500, 0.2, detail="HTTP 500", request=(["webhook-id: wh-1"], b'{"a":1}'))
    d.finish(attempt, failed, now=0.0)
    ((wall, p, r),) = d.counts.sent.newest(5)
    assert p is attempt.post and r is failed  # references, nothing copied or formatted
    shown = deliveries.answer(d.counts.sent, link.Deliveries(3, 20), "cdr", None).deliveries
    assert [(e.seq, e.outcome, e.status, e.body, e.headers) for e in shown] == [
        (1, PostOutcome.HTTP_ERROR, 500, '{"a":1}', {"webhook-id": "wh-1"})
    ]


def test_bounded_newest_first_and_limited():
    ring = DeliveryRing()
    for seq in range(1, RING_SIZE + 31):
        ring.record(float(seq), post(seq), sent(seq, b"{}"))
    assert len(ring) == RING_SIZE
    assert [p.seq for _, p, _ in ring.newest(1000)] == list(range(RING_SIZE + 30, 30, -1))
    assert [p.seq for _, p, _ in ring.newest(2)] == [RING_SIZE + 30, RING_SIZE + 29]
    assert ring.newest(0) == []


def test_secrets_are_masked_and_gzip_bodies_shown_unpacked():
    body = ('{"event":"conference_started","data":{"name":"caf\u00e9 ' + PASSWORD + '"}}').encode()
    ring = DeliveryRing()
    ring.record(
        1.5,
        post(1, body),
        sent(
            1,
            gzip_body(body),
            "Authorization: Basic Y2RyOnB3",
            f"X-Api-Key: {HEADER_VALUE}",
            "Content-Encoding: gzip",
            f"X-Quoted: says {TOKEN}",
            "X-Empty;",
            "webhook-signature: v1,abc=",
        ),
    )
    ((entry,),) = [deliveries.answer(ring, link.Deliveries(1, 20), "cdr", config()).deliveries]
    assert entry.headers == {
        "Content-Type": "application/json",
        "User-Agent": "eventsink-agent/test",
        "webhook-id": "wh-1",
        "Authorization": "***",
        "X-Api-Key": "***",
        "Content-Encoding": "gzip",
        "X-Quoted": "says ***",
        "X-Empty": "",
        "webhook-signature": "v1,abc=",
    }  # "Expect:" tells libcurl to send no Expect header: not shown
    assert entry.body == body.decode().replace(PASSWORD, "***")
    assert entry.at == "1970-01-01T00:00:01.500Z" and entry.webhook_id == "wh-1" and entry.events == 1
    text = msgspec.json.encode(entry).decode()
    for secret in (PASSWORD, TOKEN, HEADER_VALUE, SIGNING):
        assert secret not in text


def test_a_body_that_says_gzip_but_is_not_is_shown_as_it_is():
    ring = DeliveryRing()
    ring.record(1.0, post(1), sent(1, b'{"plain":true}', "Content-Encoding: gzip"))
    (entry,) = deliveries.answer(ring, link.Deliveries(1, 20), "cdr", None).deliveries
    assert entry.body == '{"plain":true}'


def test_fresh_lists_posts_only_while_following():
    ring = DeliveryRing()
    ring.record(1.0, post(1), sent(1, b"{}"))
    assert ring.fresh == []  # nobody follows: the ring append is all
    ring.follow(True)
    ring.record(2.0, post(2), sent(2, b"{}"))
    ring.record(3.0, post(3), sent(3, b"{}"))
    assert [p.seq for _, p, _ in ring.fresh] == [2, 3]
    ring.follow(False)
    assert ring.fresh == [] and len(ring) == 3
    ring.record(4.0, post(4), sent(4, b"{}"))
    assert ring.fresh == []


def test_stream_sends_the_fresh_posts_over_the_link_and_empties_the_list():
    ctx = zmq.Context()
    try:
        server, client = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        server.bind("inproc://deliveries-test")
        client.connect("inproc://deliveries-test")
        ring = DeliveryRing()
        ring.follow(True)
        for seq in (1, 2, 3):
            ring.record(float(seq), post(seq), sent(seq, b'{"n":%d}' % seq, "Authorization: Bearer " + TOKEN))
        deliveries.stream(client, ring, "cdr", config(), 5.0)
        assert ring.fresh == [] and ring.stream_at == 5.0 + deliveries.STREAM_INTERVAL
        msg = link.parse_message(internal.decode(server.recv()))
        assert isinstance(msg, link.DeliveriesStreamed) and msg.sink == "cdr"
        assert [(e.seq, e.body, e.headers["Authorization"]) for e in msg.deliveries] == [
            (1, '{"n":1}', "***"),
            (2, '{"n":2}', "***"),
            (3, '{"n":3}', "***"),
        ]
        deliveries.obey(link.FollowDeliveries(on=False), ring, client, "cdr", None)
        assert not ring.following
        deliveries.obey(link.Deliveries(9, 2), ring, client, "cdr", None)
        answer = link.parse_message(internal.decode(server.recv()))
        assert isinstance(answer, link.DeliveriesAnswer) and answer.token == 9
        assert [e.seq for e in answer.deliveries] == [3, 2]
        server.close(0)
        client.close(0)
    finally:
        ctx.term()


def test_posts_held_back_during_a_burst_are_a_deadline_of_the_loop():
    # The worker arms its stream timer at `sent.stream_at` while `sent.fresh` holds POSTs
    # (sinks/worker.py); the dispatcher asks its loop for nothing of its own.
    wakes = []
    d = Dispatcher(
        "cdr", FakeClient(), Backoff(initial=0.01, maximum=100.0), 1, clock=lambda: 0.0, wake_at=wakes.append
    )
    assert not d.counts.sent.fresh and d.pump(0.0) == 0 and wakes == []
    d.counts.sent.follow(True)
    d.counts.sent.stream_at = 7.5  # streamed at 7.4: the next batch no sooner
    d.counts.sent.record(7.45, post(1), sent(1, b"{}"))
    assert len(d.counts.sent.fresh) == 1 and d.counts.sent.stream_at == 7.5
    d.counts.sent.follow(False)
    assert not d.counts.sent.fresh  # nobody follows: nothing held, no wake-up

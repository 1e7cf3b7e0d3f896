"""The worker's ring of recent POST attempts (sinks/attempts.py): recorded by the
Dispatcher for every POST that ends, bounded, and formatted and scrubbed only
when read; and the link's Attempts / AttemptsAnswer round trip."""

from __future__ import annotations

import datetime
import logging

import msgspec

from common import internal, link, logs
from common.backoff import Backoff
from common.config_types import Config, NodeConfig, SinkConfig
from common.timespec import iso_utc
from common.vocabulary import PostOutcome
from sinks import attempts
from sinks.attempts import RING_SIZE, AttemptRing
from sinks.delivery import Dispatcher, Result
from sinks.post import Post
from sinks.shaping import wrap
from tests.sinks.harness import FakeClient, pumped

PASSWORD, URL_PASSWORD, TOKEN = "pw-Zq81-topsecret", "urlpass-77", "tok-9f8e7d"


def post(seq: int) -> Post:
    return Post(seq, "conference_updated", b"{}", f"wh-{seq}", (seq,), (0.0,))


def dispatcher(n: int = 3) -> Dispatcher:
    d = Dispatcher("cdr", FakeClient(), Backoff(initial=0.01, maximum=100.0), 1, clock=lambda: 0.0)
    for s in range(1, n + 1):
        d.put(post(s))
    return d


def config() -> Config:
    sink = SinkConfig(
        name="cdr",
        url=f"http://user:{URL_PASSWORD}@127.0.0.1:9/events",
        locations=["Oslo"],
        username="cdr",
        password=PASSWORD,
    )
    return Config(node=NodeConfig(address="10.44.99.2", location="Oslo"), sink=[sink])


def test_each_finished_post_is_recorded_newest_first_with_its_outcome_and_reason():
    d = dispatcher()
    [a] = pumped(d, 0.0)
    d.finish(a, Result(PostOutcome.HTTP_ERROR, 500, 0.25, detail="HTTP 500 Internal Server Error"), now=0.0)
    [b] = pumped(d, 1.0)  # the retry of seq 1
    d.finish(b, Result(PostOutcome.CONNECTION_ERROR, None, 0.5, detail=""), now=1.0)
    [c] = pumped(d, 3.0)
    d.finish(c, Result(PostOutcome.SUCCESS, 204, 0.125), now=3.0)
    answer = attempts.answer(d.counts.recent, link.Attempts(7, 50), "cdr", None)
    assert answer.token == 7 and answer.sink == "cdr"
    got = [(e.seq, e.events, e.webhook_id, e.outcome, e.status, e.duration, e.detail) for e in answer.attempts]
    assert got == [
        (1, 1, "wh-1", PostOutcome.SUCCESS, 204, 0.125, "HTTP 204"),
        (1, 1, "wh-1", PostOutcome.CONNECTION_ERROR, None, 0.5, "no detail"),  # what support.events writes for it
        (1, 1, "wh-1", PostOutcome.HTTP_ERROR, 500, 0.25, "HTTP 500 Internal Server Error"),
    ]
    stamps = [e.at for e in answer.attempts]
    assert stamps == sorted(stamps, reverse=True)
    assert all(s.endswith("Z") and len(s) == len("2025-11-26T19:40:00.250Z") for s in stamps)


def test_the_stop_event_outside_the_queue_is_recorded_too():
    d = dispatcher(0)

    class Once(FakeClient):
        def post(self, body, webhook_id, timeouts):
            return Result(PostOutcome.SUCCESS, 200, 0.01)

    d.clients.current = Once()
    d.send_once(post(9), None)
    [e] = attempts.answer(d.counts.recent, link.Attempts(1, 5), "cdr", None).attempts
    assert (e.seq, e.outcome, e.status) == (9, PostOutcome.SUCCESS, 200)


def test_a_bulk_envelope_shows_its_first_seq_and_its_events():
    ring = AttemptRing()
    bulk = wrap([post(5), post(6), post(7)], 2, wall=0.0)
    ring.record(1_700_000_000.0, bulk, Result(PostOutcome.SUCCESS, 200, 0.01))
    [e] = attempts.entries(ring.newest(10), None)
    assert (e.seq, e.events, e.webhook_id) == (5, 3, "wh-5+3")


def test_the_ring_stays_bounded_and_keeps_the_newest():
    ring = AttemptRing()
    for seq in range(1, RING_SIZE + 301):
        ring.record(float(seq), post(seq), Result(PostOutcome.SUCCESS, 200, 0.001))
    assert len(ring) == RING_SIZE
    newest = ring.newest(RING_SIZE + 50)
    assert len(newest) == RING_SIZE and newest[0][1] == RING_SIZE + 300 and newest[-1][1] == 301
    assert [raw[1] for raw in ring.newest(3)] == [RING_SIZE + 300, RING_SIZE + 299, RING_SIZE + 298]
    assert ring.newest(0) == []


def test_a_dispatcher_keeps_only_the_last_thousand_attempts():
    d = dispatcher(RING_SIZE + 100)
    for i in range(RING_SIZE + 100):
        [a] = pumped(d, float(i))
        d.finish(a, Result(PostOutcome.SUCCESS, 200, 0.001), now=float(i))
    assert len(d.counts.recent) == RING_SIZE and d.counts.recent.newest(1)[0][1] == RING_SIZE + 100


def test_iso_time_has_milliseconds_and_z():
    assert iso_utc(1_764_186_000.25) == "2025-11-26T19:40:00.250Z"
    assert iso_utc(1_764_186_000.9999) == "2025-11-26T19:40:00.999Z"  # never rounded into the next second
    wall = 1_700_000_123.456
    parsed = datetime.datetime.fromisoformat(iso_utc(wall).replace("Z", "+00:00"))
    assert abs(parsed.timestamp() - wall) < 0.001


def test_no_credential_survives_in_a_detail():
    ring = AttemptRing()
    leaky = [
        Result(
            PostOutcome.REDIRECT,
            302,
            0.01,
            detail=f"HTTP 302 redirect to http://user:{URL_PASSWORD}@10.0.0.1/x (not followed)",
        ),
        Result(PostOutcome.HTTP_ERROR, 401, 0.01, detail=f"HTTP 401 bad password {PASSWORD}"),
        Result(PostOutcome.HTTP_ERROR, 403, 0.01, detail=f"HTTP 403 token {TOKEN} refused"),
    ]
    for i, result in enumerate(leaky):
        ring.record(1_700_000_000.0 + i, post(i + 1), result)
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    try:
        logs.configure("sink:cdr", [TOKEN])  # the worker's log filter knows a secret the config here does not
        answer = attempts.answer(ring, link.Attempts(1, 10), "cdr", config())
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved:
            root.addHandler(h)
        root.setLevel(level)
    text = msgspec.json.encode(answer).decode()
    for secret in (PASSWORD, URL_PASSWORD, TOKEN):
        assert secret not in text
    details = [e.detail for e in reversed(answer.attempts)]
    assert details[0] == "HTTP 302 redirect to http://10.0.0.1/x (not followed)"
    assert details[1] == "HTTP 401 bad password ***" and details[2] == "HTTP 403 token *** refused"


def test_the_link_messages_round_trip_as_structs():
    ask = link.parse_command(internal.decode(internal.encode(link.Attempts(3, 20))))
    assert ask == link.Attempts(3, 20)
    ring = AttemptRing()
    ring.record(1_700_000_000.0, post(1), Result(PostOutcome.HTTP_ERROR, 500, 0.2, detail="HTTP 500"))
    frame = internal.encode(attempts.answer(ring, ask, "cdr", None))
    back = link.parse_message(internal.decode(frame))
    assert isinstance(back, link.AttemptsAnswer) and back.token == 3 and back.attempts[0].status == 500
    report = link.parse_message(
        internal.decode(internal.encode(link.WorkerReport(sink="cdr", pid=1, publisher="running")))
    )
    assert isinstance(report, link.WorkerReport)
    for bad in ({"type": "attempts_answer", "token": "x", "sink": "cdr"}, {"type": "nonsense"}):
        try:
            link.parse_message(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} was taken")

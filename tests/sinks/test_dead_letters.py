"""DeadLetters.judge, the dispatcher's word on a failed POST, with a fake journal reader:
strikes in a row, resets, bulk halving, setting aside (only once the row is written)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from common.config_types import SinkConfig
from common.vocabulary import PostOutcome
from sinks.dead_letters import DeadLetters
from sinks.http import Result
from sinks.post import Post
from sinks.shaping import wrap


class FakeReader:
    def __init__(self, fail: bool = False):
        self.rows: dict[int, tuple] = {}
        self.fail = fail
        self.forgotten: list[int] = []

    def set_aside(self, offset, topic, payload, accepted_at, webhook_id, event, attempts, status, detail):
        if self.fail:
            raise sqlite3.OperationalError("database or disk is full")
        self.rows[offset] = (payload, webhook_id, attempts, status, detail)

    def forget_dead_letter(self, offset):
        self.forgotten.append(offset)

    def accepted_at(self, offset):
        return 1_796_112_000.0


def event(seq: int, offset: int) -> Post:
    body = json.dumps(
        {
            "node": "n",
            "seq": seq,
            "version": 2,
            "time": 1.0,
            "event": "conference_updated",
            "data": {"tag": f"e-{offset}"},
        }
    ).encode()
    return Post(seq, "conference_updated", body, f"epoch-{offset}", (offset,), (1.0,))


def refused(status: int = 400, answer: bytes = b'{"error": "unknown field x_new"}') -> Result:
    return Result(PostOutcome.HTTP_ERROR, status, 0.01, detail=f"HTTP {status} Bad Request", answer=answer)


def letters(after: int = 3, statuses=(400, 413, 415, 422), reader=None) -> DeadLetters:
    sink = SinkConfig(
        name="cdr",
        url="http://127.0.0.1:9/",
        locations=["Oslo"],
        dead_letter_after=after,
        dead_letter_statuses=list(statuses),
    )
    return DeadLetters(sink, reader or FakeReader())


def test_after_n_refusals_in_a_row_the_event_is_set_aside_and_released():
    dl = letters(after=3)
    p = event(7, 70)
    assert dl.judge(p, refused()) == (p,) and dl.judge(p, refused()) == (p,)
    assert dl.judge(p, refused()) == ()
    assert dl.set_aside == 1 and list(dl.reader.rows) == [p.offsets[0]]
    payload, webhook_id, attempts, status, detail = dl.reader.rows[70]
    assert payload == p.body and webhook_id == "epoch-70" and attempts == 3 and status == 400
    assert detail == 'HTTP 400 Bad Request: {"error": "unknown field x_new"}'


@pytest.mark.parametrize(
    "other",
    [
        Result(PostOutcome.HTTP_ERROR, 500, 0.1),
        Result(PostOutcome.HTTP_ERROR, 401, 0.1),
        Result(PostOutcome.TIMEOUT, None, 5.0),
        Result(PostOutcome.CONNECTION_ERROR, None, 0.0),
    ],
)
def test_any_other_outcome_resets_the_strikes(other):
    dl = letters(after=2)
    p = event(1, 10)
    dl.judge(p, refused())
    assert dl.judge(p, other) == (p,) and p.strikes == 0
    assert dl.judge(p, refused()) == (p,)  # one strike again, not two
    assert dl.judge(p, refused()) == () and 10 in dl.reader.rows


def test_off_by_default_and_only_for_the_listed_statuses():
    p = event(1, 10)
    off = letters(after=0)
    assert all(off.judge(p, refused()) == (p,) for _ in range(10)) and not off.reader.rows
    picky = letters(after=1, statuses=(422,))
    assert picky.judge(p, refused(400)) == (p,) and picky.judge(p, refused(422)) == ()


def test_a_bulk_envelope_is_halved_down_to_single_events_before_any_strike():
    dl = letters(after=1)
    parts = [event(seq, 100 + seq) for seq in range(1, 6)]
    envelope = wrap(parts, 2, wall=1.0)
    first, second = dl.judge(envelope, refused(413))
    assert [p.seq for p in first.parts] == [1, 2] and [p.seq for p in second.parts] == [3, 4, 5]
    assert first.seq == 1 and second.seq == 3 and not dl.reader.rows  # no strike while halving
    a, b = dl.judge(second, refused(400))
    assert [p.seq for p in a.parts] == [3] and [p.seq for p in b.parts] == [4, 5]
    assert dl.judge(a, refused(400)) == ()  # alone in its envelope: now it counts
    [(payload, webhook_id, *_)] = dl.reader.rows.values()
    assert webhook_id == "epoch-103" and json.loads(payload)["seq"] == 3  # the inner envelope, as sent
    assert list(dl.reader.rows) == [103] and a.offsets == (103,)


def test_a_journal_that_refuses_the_row_leaves_the_event_to_be_retried():
    dl = letters(after=1, reader=FakeReader(fail=True))
    p = event(1, 10)
    assert dl.judge(p, refused()) == (p,) and not dl.reader.rows and dl.set_aside == 0


def test_a_lifecycle_event_is_kept_under_a_key_below_every_offset():
    dl = letters(after=1)
    started = Post(
        1, "eventsink_started", b'{"event": "eventsink_started", "seq": 1}', "epoch-cdr-started-x", (), (1.0,)
    )
    assert dl.judge(started, refused()) == ()
    [key] = dl.reader.rows
    assert key < 0


def test_a_redriven_letter_delivered_is_forgotten_once():
    dl = letters()
    dl.redriving = 1
    p = Post(5, "conference_updated", b"{}", "epoch-70", (), (0.0,), dead_letter=70)
    dl.delivered(p)
    assert dl.reader.forgotten == [70] and dl.redriven == 1 and dl.redriving == 0
    dl.delivered(Post(6, "conference_updated", b"{}", "epoch-71", (71,), (0.0,)))
    assert dl.reader.forgotten == [70]


def test_the_dispatcher_retries_the_halves_at_once_without_a_backoff_wait():
    from common.backoff import Backoff
    from sinks.delivery import Attempt, Dispatcher
    from tests.sinks.harness import FakeClient, pumped

    dl = letters(after=1)
    d = Dispatcher("cdr", FakeClient(), Backoff(initial=1.0, maximum=60.0), 1, judge=dl.judge, clock=lambda: 100.0)
    envelope = wrap([event(seq, 100 + seq) for seq in range(1, 5)], 2, wall=1.0)
    d.put(envelope)
    [attempt] = pumped(d, 100.0)
    d.finish(attempt, refused(413), now=100.0)
    assert d.backoff.failures == 0  # split: no doubling wait
    [half] = pumped(d, 100.0)
    assert [p.seq for p in half.post.parts] == [1, 2]
    d.finish(half, Result(PostOutcome.HTTP_ERROR, 500, 0.1), now=100.0)
    assert d.backoff.failures == 1 and pumped(d, 100.0) == []  # an outage does wait
    assert isinstance(attempt, Attempt)

"""Dispatcher: the sink-level backoff policy, probes, Retry-After, exceeded; fake clock, no threads."""

import pytest

from common.backoff import Backoff
from common.vocabulary import PostOutcome, PublisherState
from sinks.delivery import Dispatcher, Result
from sinks.post import Post
from tests.sinks.harness import FakeClient, pumped, seqs


def post(seq):
    return Post(seq, "conference_updated", b"{}", f"e-{seq}", (seq,), (0.0,))


def rig(limit=1, initial=1.0, maximum=100.0, n=5):
    changes = []
    d = Dispatcher(
        "cdr",
        FakeClient(),
        Backoff(initial=initial, maximum=maximum),
        limit,
        on_state_change=lambda: changes.append(d.state),
        clock=lambda: 0.0,
        on_done=lambda p, result: d.done.append((p, result)),
    )
    d.done = []  # what on_done was handed, in order
    for s in range(1, n + 1):
        d.put(post(s))
    return d, changes


OK = Result(PostOutcome.SUCCESS, 200, 0.01)
FAIL = Result(PostOutcome.HTTP_ERROR, 500, 0.01, detail="HTTP 500")


def test_in_order_one_at_a_time():
    d, _ = rig(limit=1)
    [a] = pumped(d, 0.0)
    assert a.post.seq == 1 and pumped(d, 0.0) == []  # max_in_flight = 1
    d.finish(a, OK, now=0.0)
    assert seqs(pumped(d, 0.0)) == [2]
    assert [(p.seq, r) for p, r in d.done] == [(1, OK)]  # exactly once
    assert d.counts.delivered == 1 and d.counts.attempts["success"] == 1


def test_failure_waits_then_retries_the_oldest_and_doubles():
    d, _ = rig(limit=1, initial=0.5)
    [a] = pumped(d, 0.0)
    d.finish(a, FAIL, now=10.0)
    assert d.snapshot()["current_backoff"] == 0.5 and d.snapshot()["next_backoff"] == 1.0
    assert pumped(d, 10.49) == []
    [b] = pumped(d, 10.5)
    assert b.post.seq == 1 and b.probe
    d.finish(b, FAIL, now=11.0)
    assert pumped(d, 11.99) == []
    [c] = pumped(d, 12.0)
    assert c.post.seq == 1
    d.finish(c, FAIL, now=12.0)
    assert d.snapshot()["current_backoff"] == 2.0
    [e] = pumped(d, 14.0)
    d.finish(e, OK, now=14.1)
    snap = d.snapshot()
    assert snap["current_backoff"] == 0.0 and snap["failures"] == 3 and snap["attempts"]["http_error"] == 3
    assert seqs(pumped(d, 14.1)) == [2]  # no wait after a success


def test_pipelined_failures_already_in_flight_do_not_double_and_one_probe_per_wait():
    d, _ = rig(limit=4, initial=1.0, n=8)
    attempts = pumped(d, 0.0)
    assert seqs(attempts) == [1, 2, 3, 4] and pumped(d, 0.0) == []
    for a in attempts:
        d.finish(a, FAIL, now=1.0)
    assert d.backoff.failures == 1 and d.snapshot()["current_backoff"] == 1.0
    assert pumped(d, 1.99) == []
    [probe] = pumped(d, 2.0)  # a single probe, although 4 may be in flight
    assert probe.probe and probe.post.seq == 1  # the oldest undelivered first
    assert pumped(d, 2.0) == []  # still one, until it ends
    d.finish(probe, OK, now=2.1)
    resumed = pumped(d, 2.1)
    assert seqs(resumed) == [2, 3, 4, 5]  # full concurrency again, oldest first


def test_a_failed_probe_doubles():
    d, _ = rig(limit=4, n=2)
    a, b = pumped(d, 0.0)
    d.finish(a, FAIL, now=0.0)
    [probe] = pumped(d, 1.0)
    d.finish(probe, FAIL, now=1.0)
    assert d.backoff.failures == 2 and d.snapshot()["current_backoff"] == 2.0
    d.finish(b, FAIL, now=1.5)  # started before the first failure: no doubling
    assert d.backoff.failures == 2


def test_retry_after_sets_a_floor():
    d, _ = rig(initial=0.2)
    [a] = pumped(d, 0.0)
    d.finish(a, Result(PostOutcome.HTTP_ERROR, 503, 0.0, retry_after=3.0), now=0.0)
    assert d.snapshot()["current_backoff"] == 3.0
    assert pumped(d, 2.9) == [] and len(pumped(d, 3.0)) == 1


def test_exceeding_the_maximum_stops_sending_and_reports():
    d, changes = rig(initial=0.1, maximum=0.5)
    now = 0.0
    for wait in (0.1, 0.2, 0.4):
        [a] = pumped(d, now)
        d.finish(a, FAIL, now=now)
        assert d.state == PublisherState.RUNNING and d.snapshot()["current_backoff"] == pytest.approx(wait)
        now += wait
    [a] = pumped(d, now)
    d.finish(a, Result(PostOutcome.CONNECTION_ERROR, detail="refused"), now=now)
    assert d.state == PublisherState.BACKOFF_EXCEEDED and changes == [PublisherState.BACKOFF_EXCEEDED]
    assert pumped(d, now + 1e6) == []
    assert (
        d.pause() == 5
        and d.state == PublisherState.PAUSED
        and changes == [PublisherState.BACKOFF_EXCEEDED, PublisherState.PAUSED]
    )
    assert d.queued == 0


def test_the_stop_is_logged_and_reported_with_one_figure(caplog):
    """The worker's log line and the report the Maximum Backoff alarm quotes name the same wait."""
    d, _ = rig(initial=0.1, maximum=0.5)
    now = 0.0
    with caplog.at_level("ERROR", logger="support.events"):
        for _ in range(4):
            [a] = pumped(d, now)
            d.finish(a, FAIL, now=now)
            now += 1.0
    assert d.state == PublisherState.BACKOFF_EXCEEDED
    [line] = [r.getMessage() for r in caplog.records if "exceeds max_retry_backoff" in r.getMessage()]
    assert d.snapshot()["next_backoff"] == pytest.approx(0.8) and "(0.8 s)" in line


def test_pause_drops_queue_and_late_failures_are_not_requeued():
    d, _ = rig(limit=2)
    late = pumped(d, 0.0)
    assert len(late) == 2
    d.pause()
    for a in late:
        d.finish(a, FAIL, now=0.0)
    assert d.queued == 0 and pumped(d, 100.0) == []
    assert d.done == []


def test_configure_changes_limit_and_bounds_and_swaps_the_client():
    d, _ = rig(limit=1)
    old = d.client
    new = FakeClient()
    d.configure(3, 0.25, 9.0, new)
    try:
        assert d.client is new and old.closed and d.backoff.initial == 0.25 and d.backoff.maximum == 9.0
        assert len(pumped(d, 0.0)) == 3
    finally:
        d.close()


def test_a_success_already_in_flight_resets_but_the_wait_runs_out():
    d, _ = rig(limit=4, initial=1.0, n=2)
    a, b = pumped(d, 0.0)
    for s in range(3, 9):  # queued after the two started
        d.put(post(s))
    d.finish(a, FAIL, now=1.0)
    d.finish(b, OK, now=1.5)  # started before the failure
    assert d.backoff.failures == 0
    assert pumped(d, 1.9) == []  # nothing new before the wait is over
    resumed = pumped(d, 2.0)
    assert len(resumed) == 4 and not any(x.probe for x in resumed)  # the success ended probing
    assert seqs(resumed) == [1, 3, 4, 5]


def test_a_post_that_ends_while_it_starts_is_collected_at_once():
    """A POST can end inside pump()'s kick (here: a scheme libcurl is not allowed to speak fails at
    once): pump() must account for it before it returns, or the worker sleeps on it (it once slept
    forever with one POST counted in flight)."""
    import time as real_time

    from common.config_types import TuningConfig
    from sinks.http import HttpClient
    from tests.sinks.harness import make_sink

    client = HttpClient(make_sink("gopher://127.0.0.1:1/x"), TuningConfig())
    d = Dispatcher("cdr", client, Backoff(initial=1.0, maximum=100.0), 1)
    d.put(post(1))
    now = real_time.monotonic()
    assert d.pump(now) == 1
    assert d.in_flight == 0 and d.counts.failures == 1 and d.counts.attempts["connection_error"] == 1
    client.close()


# ------------------------------------------------------------------ max_rate pacing


def bulk_post(seq, events):
    return Post(seq, "eventsink_bulk", b"{}", f"b-{seq}", tuple(range(seq, seq + events)), (0.0,) * events)


def test_max_rate_spaces_starts_and_the_deadline_is_the_end_of_the_spacing():
    d, _ = rig(limit=4, n=4)
    d.configure(4, 1.0, 100.0, max_rate=20.0)  # 0.05 s per event
    [first] = pumped(d, 0.0)  # in_flight would allow 3 more
    wakes = []
    d.wake_at = wakes.append  # pump asks the worker's loop for a timer: it sleeps until then, no busy loop
    assert first.post.seq == 1 and pumped(d, 0.049) == [] and wakes == [pytest.approx(0.05)]
    assert seqs(pumped(d, 0.05)) == [2]
    d.finish(first, OK, now=0.06)  # an answer does not shorten the spacing
    assert pumped(d, 0.07) == [] and seqs(pumped(d, 0.1)) == [3]


def test_max_rate_counts_the_inner_events_of_a_bulk_envelope_and_retries():
    d = Dispatcher("cdr", FakeClient(), Backoff(initial=0.01, maximum=100.0), 1, clock=lambda: 0.0, max_rate=10.0)
    d.put(bulk_post(1, 25))
    d.put(post(26))
    [a] = pumped(d, 0.0)
    d.finish(a, FAIL, now=0.1)  # the backoff (0.01 s) ends long before the spacing of 25 events
    wakes = []
    d.wake_at = wakes.append
    assert pumped(d, 2.49) == [] and wakes == [pytest.approx(2.5)]
    [retry] = pumped(d, 2.5)
    assert retry.post.seq == 1 and retry.probe
    d.finish(retry, OK, now=2.6)
    assert pumped(d, 4.99) == [] and seqs(pumped(d, 5.0)) == [26]


def test_no_max_rate_no_spacing_and_removing_it_applies_at_once():
    d, _ = rig(limit=3, n=3)
    assert seqs(pumped(d, 0.0)) == [1, 2, 3]
    d, _ = rig(limit=3, n=3)
    d.configure(3, 1.0, 100.0, max_rate=0.5)
    assert seqs(pumped(d, 0.0)) == [1]
    assert pumped(d, 1.0) == []
    d.configure(3, 1.0, 100.0, max_rate=0.0)
    assert seqs(pumped(d, 1.0)) == [2, 3]

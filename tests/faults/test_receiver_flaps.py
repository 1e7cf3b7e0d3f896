"""A receiver that flaps while 2,000 events flow: 503 (with and without
Retry-After), connections refused, 10 s stalls beyond `response_timeout`, and
connections reset in the middle of the answer (the receiver has the event,
the agent cannot know it). Each fault holds until it has reached the agent, each healthy
spell until a POST succeeds (tests/faults/flapper.py says why). Every journaled event
arrives; duplicates are counted, never a gap."""

from __future__ import annotations

import pytest

from tests.e2e.harness import sink
from tests.faults.flapper import Flapper, attempt_outcomes
from tests.faults.oracle import Ledger, Tally
from tests.helpers import wait_until

TOTAL = 2000
RATE = 250  # events/s: eight seconds of traffic under the faults
MORE = 250  # events published again and again, at RATE, while a fault has not yet reached the agent
MORE_LIMIT = 60  # times: the faults hold until met, but a test that cannot end is no test


@pytest.mark.parametrize("max_in_flight", [1, 8])
def test_a_flapping_receiver_loses_nothing(make_agent, receiver, proxy, loadgen, report, max_in_flight):
    agent = make_agent(
        [sink("cdr", proxy.url, max_in_flight=max_in_flight)],
        tuning={
            "response_timeout": 1,
            "connection_timeout": 1,
            "initial_retry_backoff": 0.1,
            "max_retry_backoff": 120,
            "max_background_posts": 100_000,
        },
    )
    ledger = Ledger(agent.journal_path)
    tally = Tally(receiver)
    flapper = Flapper(receiver, proxy, outcomes=lambda: attempt_outcomes(agent, "cdr"))
    gen = loadgen(agent.publish_endpoint, "f", TOTAL, rate=RATE, mix=True)
    flapper.start()
    try:
        ledger.add_published("f", gen.wait())
        for more in range(MORE_LIMIT):  # a fault needs POSTs to meet it: events flow until each has
            if flapper.cycled() or not flapper.is_alive():
                break
            again = loadgen(agent.publish_endpoint, f"m{more}", MORE, rate=RATE, mix=True)
            ledger.add_published(again.prefix, again.wait())
        published = sum(ledger.published.values())
        wait_until(lambda: ledger.journaled() == published, 10, what="every event journaled")
    finally:
        flapper.stop()
    wait_until(lambda: ledger.conserved(tally), 60, what="every journaled event delivered")
    outcomes = attempt_outcomes(agent, "cdr")
    attempts = {k: int(outcomes.get(k, 0)) for k in ("success", "http_error", "timeout", "connection_error")}
    v = ledger.verdict(
        f"flapping receiver, max_in_flight={max_in_flight}",
        tally,
        check_order=max_in_flight == 1,
        extra=f"faults={len(flapper.applied)} resets={proxy.resets} attempts={attempts}",
    )
    report(v.line())
    assert not v.problems, v.problems
    assert flapper.cycled() and not flapper.unmet, (flapper.reached, flapper.unmet)
    # every kind of fault reached the agent
    assert attempts["http_error"] and attempts["timeout"] and attempts["connection_error"] and proxy.resets
    assert not agent.alarms()

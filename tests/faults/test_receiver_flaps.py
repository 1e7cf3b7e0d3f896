"""A receiver that flaps while 2,000 events flow: 503 (with and without
Retry-After), connections refused, 10 s stalls beyond `response_timeout`, and
connections reset in the middle of the answer (the receiver has the event,
the agent cannot know it). Every journaled event arrives; duplicates are
counted, never a gap."""

from __future__ import annotations

import pytest

from tests.e2e.harness import sink
from tests.faults.flapper import Flapper
from tests.faults.oracle import Ledger, Tally
from tests.helpers import wait_until

TOTAL = 2000
RATE = 250  # events/s: eight seconds of traffic under the faults


@pytest.mark.parametrize("max_in_flight", [1, 8])
def test_a_flapping_receiver_loses_nothing(make_agent, receiver, proxy, loadgen, report, max_in_flight):
    agent = make_agent(
        [sink("cdr", proxy.url, max_in_flight=max_in_flight)],
        tuning={"response_timeout": 1, "connection_timeout": 1, "initial_retry_backoff": 0.1,
                "max_retry_backoff": 120, "max_background_posts": 100_000},
    )
    ledger = Ledger(agent.journal_path)
    tally = Tally(receiver)
    flapper = Flapper(receiver, proxy)
    gen = loadgen(agent.publish_endpoint, "f", TOTAL, rate=RATE, mix=True)
    flapper.start()
    try:
        ledger.add_published("f", gen.wait())
        wait_until(lambda: ledger.journaled() == TOTAL, 10, what="every event journaled")
    finally:
        flapper.stop()
    wait_until(lambda: ledger.conserved(tally), 60, what="every journaled event delivered")
    attempts = {k: int(agent.metric("eventsink_post_attempts_total", sink="cdr", outcome=k))
                for k in ("success", "http_error", "timeout", "connection_error")}
    v = ledger.verdict(f"flapping receiver, max_in_flight={max_in_flight}", tally,
                       check_order=max_in_flight == 1,
                       extra=f"faults={len(flapper.applied)} resets={proxy.resets} attempts={attempts}")
    report(v.line())
    assert not v.problems, v.problems
    assert set(Flapper.FAULTS) <= set(flapper.applied)
    # every kind of fault reached the agent
    assert attempts["http_error"] and attempts["timeout"] and attempts["connection_error"] and proxy.resets
    assert not agent.alarms()

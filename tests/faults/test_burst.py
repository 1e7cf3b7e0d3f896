"""A burst of 100,000 events from four publisher processes sending as fast as
they can: every one is journaled (counted against what the publishers sent)
and delivered (bulk envelopes, pipelined)."""

from __future__ import annotations

from tests.e2e.harness import sink
from tests.faults.oracle import Ledger, Tally
from tests.helpers import wait_until

PUBLISHERS = 4
PER_PUBLISHER = 25_000
TOTAL = PUBLISHERS * PER_PUBLISHER


def test_burst_of_100k_from_four_publishers_is_journaled_and_delivered(make_agent, receiver, loadgen, report):
    agent = make_agent(
        [sink("cdr", receiver.url, bulk=True, bulk_max_events=500, bulk_interval=0.2, max_in_flight=4)],
        tuning={"max_background_posts": 1_000_000},
    )
    ledger = Ledger(agent.journal_path)
    tally = Tally(receiver)
    gens = [loadgen(agent.publish_endpoint, f"p{i}", PER_PUBLISHER) for i in range(PUBLISHERS)]
    for g in gens:
        ledger.add_published(g.prefix, g.wait(timeout=60))
    assert sum(ledger.published.values()) == TOTAL
    wait_until(
        lambda: ledger.journaled() == TOTAL,
        30,
        interval=0.2,
        what=f"all {TOTAL} events journaled (so far {ledger.journaled()})",
    )
    wait_until(lambda: ledger.conserved(tally), 90, interval=0.5, what="every journaled event delivered")
    status = agent.status()
    v = ledger.verdict(
        "burst 100k / 4 publishers, bulk",
        tally,
        received_counter=ledger.received_counter(agent),
        check_offsets=False,
        extra=f"posts={tally.posts} rejected={status['bus']['rejected']}",
    )
    report(v.line())
    assert not v.problems, v.problems
    assert not status["bus"]["rejected"]

"""kill -9 of a sink worker, three times at random moments while 3,000 events
flow: every journaled event still reaches the receiver, in order and under its
own webhook-id, and thanks to the cursor shadow (sinks/shadow.py) what comes
twice is at most the events of the POSTs that were in flight at each kill."""

from __future__ import annotations

import random

import pytest

from tests.e2e.harness import sink
from tests.faults.kills import kill_workers
from tests.faults.oracle import Ledger, Tally
from tests.helpers import wait_until

TOTAL = 3000
RATE = 700  # events/s: the flow lasts about four seconds


CASES = {  # name: (sink options, POSTs in flight at most, events per POST at most)
    "in order": ({"max_in_flight": 1}, 1, 1),
    "4 in flight": ({"max_in_flight": 4}, 4, 1),
    "8 in flight": ({"max_in_flight": 8}, 8, 1),
    "bulk": ({"bulk": True, "bulk_max_events": 50, "bulk_interval": 0.05}, 1, 50),
}


@pytest.mark.parametrize("case", list(CASES))
def test_three_kill_9_of_the_worker_lose_nothing(make_agent, receiver, loadgen, report, case):
    options, in_flight, per_post = CASES[case]
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    agent = make_agent([sink("cdr", receiver.url, **options)])
    ledger = Ledger(agent.journal_path)
    tally = Tally(receiver)
    gen = loadgen(agent.publish_endpoint, "k", TOTAL, rate=RATE, mix=True)
    killed = kill_workers(agent, rng, 3)
    ledger.add_published("k", gen.wait())
    wait_until(lambda: ledger.journaled() == TOTAL, 15, what="every published event journaled")
    wait_until(lambda: ledger.conserved(tally), 60, what="every journaled event delivered")
    bound = len(killed) * in_flight * per_post
    v = ledger.verdict(
        f"kill -9 worker x3, {case} (seed {seed})",
        tally,
        received_counter=ledger.received_counter(agent),
        check_order=options.get("max_in_flight") == 1,
        check_offsets=not options.get("bulk"),
        extra=f"duplicates_bound={bound} worker_restarts={agent.sink_status('cdr')['restarts']} posts={tally.posts}",
    )
    report(v.line())
    assert not v.problems, v.problems
    assert agent.sink_status("cdr")["restarts"] >= 3
    assert v.duplicates <= bound, f"{v.duplicates} duplicates, more than the {bound} events of the POSTs in flight"

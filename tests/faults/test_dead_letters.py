"""Dead letters under faults: poison events among 3,000 while the worker is
killed with -9 twice. The conservation oracle counts a dead letter as kept:
every journaled event is delivered or held, nothing is lost, and no poison
event is ever acknowledged."""

from __future__ import annotations

import json
import random

import pytest

from tests.e2e.harness import sink
from tests.faults.kills import kill_workers
from tests.faults.oracle import Ledger, Tally
from tests.helpers import wait_until

TOTAL = 3000
RATE = 700  # events/s
POISON = {f"d-{i}" for i in range(TOTAL) if i % 500 == 137}  # conference_updated events (slot 7 of the mix)


def refuse_poison(envelope: dict) -> int | None:
    inner = envelope["data"] if envelope["event"] == "eventsink_bulk" else [envelope]
    fids = {e["data"].get("fid") for e in inner if isinstance(e.get("data"), dict)}
    return 422 if fids & POISON else None


@pytest.mark.parametrize(
    "options",
    [{"max_in_flight": 1}, {"bulk": True, "bulk_max_events": 50, "bulk_interval": 0.05}],
    ids=["in order", "bulk"],
)
def test_poison_events_with_kill_9_are_held_never_lost(make_agent, receiver, loadgen, report, options):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    receiver.reject_events(refuse_poison)
    agent = make_agent(
        [sink("cdr", receiver.url, dead_letter_after=2, **options)],
        tuning={"initial_retry_backoff": 0.02, "max_retry_backoff": 60, "max_background_posts": 50_000},
    )
    ledger = Ledger(agent.journal_path)
    tally = Tally(receiver)
    gen = loadgen(agent.publish_endpoint, "d", TOTAL, rate=RATE, mix=True)
    kill_workers(agent, rng, 2, wait=(0.3, 1.5))
    ledger.add_published("d", gen.wait())
    wait_until(lambda: ledger.journaled() == TOTAL, 15, what="every published event journaled")
    wait_until(lambda: ledger.conserved(tally), 60, what="every journaled event delivered or held")
    v = ledger.verdict(
        f"dead letters with kill -9 x2, {'bulk' if options.get('bulk') else 'in order'} (seed {seed})",
        tally,
        received_counter=ledger.received_counter(agent),
        check_offsets=not options.get("bulk"),
        check_order=not options.get("bulk"),
    )
    report(v.line())
    assert not v.problems, v.problems
    assert set(ledger.held(tally).values()) == POISON
    assert not POISON & set(tally.counts)  # a refused event is never counted as delivered
    listed = agent.client().call("GET", "/v1/sinks/cdr/dead-letters")[1]
    assert len(listed) == len(POISON) and all(d["status"] == 422 for d in listed)
    assert {json.loads(r.body)["event"] for r in receiver.requests if r.status == 422} <= {
        "conference_updated",
        "eventsink_bulk",
    }

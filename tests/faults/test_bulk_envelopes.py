"""Bulk envelopes keep what they hold (docs/delivery.md, `bulk = true`) through faults: three kill -9
of the worker under load, a SIGTERM + start and a kill -9 of the whole agent + start, with a
real receiver. Every `webhook-id` that comes twice holds the same events in the same order, and
a receiver deduplicating on `webhook-id` ends with each journaled event exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
from collections import Counter

import pytest

from tests.e2e.harness import sink
from tests.faults.kills import kill_workers
from tests.faults.oracle import Ledger, Tally
from tests.helpers import dedupe_bulk, wait_until

TOTAL = 3000
RATE = 700  # events/s: the flow lasts about four seconds
BULK = {"bulk": True, "bulk_max_events": 50, "bulk_interval": 0.05}


def deduplicated(receiver) -> tuple[Counter, list[str], int]:
    """What a receiver deduplicating on webhook-id stores: (fid -> times stored, what is wrong,
    POSTs that repeated an id it had)."""
    stored, broken, repeats = dedupe_bulk(receiver.requests)
    fids = Counter(
        json.loads(data)["fid"]
        for events in stored.values()
        for name, data in events
        if not name.startswith("eventsink_")
    )
    return fids, broken, repeats


def assert_exactly_once(receiver, ledger: Ledger, report, test: str, tally: Tally) -> None:
    """Every event stored once after deduplicating on webhook-id, and each id always the same envelope."""
    fids, broken, repeats = deduplicated(receiver)
    report(
        f"{test}: journaled={ledger.journaled()} delivered={tally.update().delivered} "
        f"stored_after_dedupe={sum(fids.values())} repeated_posts={repeats} broken_ids={len(broken)}"
    )
    assert broken == [], broken[:5]
    assert all(ledger.is_published(f) for f in fids)
    assert len(fids) == ledger.journaled() and set(fids.values()) == {1}, (
        f"{sum(fids.values()) - len(fids)} events stored twice after deduplicating on webhook-id"
    )


def kill_as_envelopes_land(agent, receiver, times: int) -> list[int]:
    """kill -9 the worker TIMES times, each the moment the receiver has stored a few more journal
    envelopes from the worker then running (it may not have their answers yet); their pids."""
    killed: list[int] = []
    for _ in range(times):
        pid = wait_until(
            lambda: (p := agent.sink_status("cdr")["pid"]) not in (None, *killed) and p, what="a live worker to kill"
        )
        landed = len(receiver.requests)
        wait_until(lambda: len(receiver.requests) >= landed + 3, 30, what="envelopes from the new worker")
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
    return killed


@pytest.mark.parametrize("kills", ["random", "as envelopes land"])
@pytest.mark.parametrize("in_flight", [1, 4])
def test_three_kill_9_of_a_bulk_worker_under_load_re_form_every_envelope(
    make_agent, receiver, loadgen, report, in_flight, kills
):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    # Slow answers keep an envelope in flight at every kill; the receiver stores it all the same.
    receiver.respond(200, delay=0.1)
    agent = make_agent(
        [sink("cdr", receiver.url, max_in_flight=in_flight, **BULK)],
        tuning={"media_streams_wait": 0.5, "max_background_posts": 50_000},
    )
    ledger = Ledger(agent.journal_path)
    tally = Tally(receiver)
    gen = loadgen(agent.publish_endpoint, "k", TOTAL, rate=RATE, mix=True)
    killed = kill_workers(agent, rng, 3) if kills == "random" else kill_as_envelopes_land(agent, receiver, 3)
    ledger.add_published("k", gen.wait())
    wait_until(lambda: ledger.journaled() == TOTAL, 15, what="every published event journaled")
    wait_until(lambda: ledger.conserved(tally), 60, what="every journaled event delivered")
    assert len(killed) == 3 and agent.sink_status("cdr")["restarts"] >= 3
    if kills != "random":  # a kill right after the receiver stored envelopes: some come twice
        # (the receiver stores what was in flight at a kill when its slow answer is due, maybe after the rest)
        wait_until(lambda: deduplicated(receiver)[2] > 0, 15, what="an envelope in flight at a kill to come twice")
    assert_exactly_once(
        receiver, ledger, report, f"bulk kill -9 worker x3 ({kills}), {in_flight} in flight (seed {seed})", tally
    )


@pytest.mark.parametrize("how", ["SIGTERM", "kill -9"])
def test_an_agent_restart_re_forms_the_envelopes_in_flight(make_agent, receiver, loadgen, report, how):
    # Answers slower than a worker's grace at shutdown: envelopes are in flight when the agent goes.
    receiver.respond(200, delay=1.5)
    agent = make_agent([sink("cdr", receiver.url, max_in_flight=4, **BULK)], tuning={"max_background_posts": 50_000})
    ledger = Ledger(agent.journal_path)
    tally = Tally(receiver)
    gen = loadgen(agent.publish_endpoint, "r", TOTAL, mix=True)
    ledger.add_published("r", gen.wait())
    wait_until(lambda: ledger.journaled() == TOTAL, 15, what="the backlog journaled")
    wait_until(lambda: tally.update().distinct >= 300, 30, what="delivery under way")
    if how == "SIGTERM":
        assert agent.stop(signal.SIGTERM) == 0
    else:
        agent.kill_all()
    assert tally.update().distinct < TOTAL, "the backlog was gone before the stop: nothing was tested"
    receiver.respond(200)
    agent.start()
    wait_until(lambda: ledger.conserved(tally), 60, what="the backlog delivered after the restart")
    wait_until(lambda: deduplicated(receiver)[2] > 0, 15, what=f"an envelope in flight at the {how} to come twice")
    assert_exactly_once(receiver, ledger, report, f"bulk agent {how} + start", tally)

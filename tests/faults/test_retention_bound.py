"""Retention gives way at any size (docs/delivery.md, "Retention and replay"): with
the default retention (24 h) every delivered event stays for replay, yet
retained events give way, oldest first, to new ones, so that retention never
causes a `journal_full` rejection, whatever the events' size (up to
`max_message_kb`) and whatever `max_journal_mb` (1 or more).

A real agent and a real receiver on 127.0.0.1: a batch of about BATCH_BYTES is
published, the test waits until the receiver has every event of it, then
publishes the next, until the events published weigh the bound FILLS times
over. At most one batch is ever undelivered, so not one event may be refused;
the journal (database + WAL) stays within the bound on disk throughout, and
rows are still kept for replay at the end. All six cases failed before the
broker counted what the workers' cursor shadows vouch for as delivered: it
trusted only the SQLite cursors, committed about once a second."""

from __future__ import annotations

import pytest

from tests.e2e.harness import sink
from tests.faults.oracle import Ledger, Tally, journal_rows
from tests.helpers import Sampler, wait_until

BATCH_BYTES = 100 * 1024  # undelivered at most: one batch (a 200 kB event is a batch of its own)
FILLS = 3  # the events published weigh the bound this many times over
MAX_MESSAGE_KB = 256


def padded_event(fid: str, size: int) -> dict:
    """`data` of an event whose payload is about SIZE bytes."""
    return {"name": "retention", "fid": fid, "pad": "p" * max(0, size - 90)}


@pytest.mark.parametrize("size", [200, 2048, 200 * 1024], ids=["200B", "2kB", "200kB"])
@pytest.mark.parametrize("journal_mb", [1, 2])
def test_retained_events_give_way_without_journal_full(make_agent, receiver, report, journal_mb, size):
    bound = journal_mb * 1024 * 1024
    # Bulk envelopes keep the 200-byte cases (15,000-30,000 events) to seconds; the bound sees the
    # same rows either way (single POSTs: the same result, measured).
    agent = make_agent(
        [sink("cdr", receiver.url, bulk=True, bulk_max_events=1000, bulk_interval=0.01)],
        agent={"max_journal_mb": journal_mb, "max_message_kb": MAX_MESSAGE_KB},
    )
    sampler = Sampler(agent.journal_path)
    ledger = Ledger(agent.journal_path)
    tally = Tally(receiver)
    per_batch = max(1, BATCH_BYTES // size)
    batches = -(-FILLS * bound // (per_batch * size))
    pub = agent.publisher()
    try:
        assert pub.wait_ready(10), "the broker never subscribed"
        for b in range(batches):
            for i in range(per_batch):
                pub.publish("conference_updated", padded_event(f"r-{b * per_batch + i}", size))
            ledger.add_published("r", per_batch)
            wait_until(
                lambda: ledger.journaled() == (b + 1) * per_batch or agent.bus_rejected("journal_full"),
                20,
                what=f"batch {b} of {batches} journaled",
            )
            wait_until(lambda: ledger.conserved(tally), 20, what=f"batch {b} of {batches} delivered")
            assert agent.bus_rejected("journal_full") == 0, (
                f"journal_full after {b} batches of {per_batch} events of {size} bytes (bound {journal_mb} MB)"
            )
    finally:
        pub.close(5)
    peak = sampler.stop()
    v = ledger.verdict(
        f"retention gives way ({journal_mb} MB, {size} B events)",
        tally,
        received_counter=ledger.received_counter(agent),
        check_offsets=False,
        extra=f"journal_peak={peak} held={journal_rows(agent.journal_path)}",
    )
    report(v.line())
    assert not v.problems, v.problems
    assert ledger.journaled() == batches * per_batch
    assert agent.status()["bus"]["rejected"].get("journal_full", 0) == 0
    assert not agent.alarms()
    assert peak <= bound, f"the journal reached {peak} bytes on disk, the bound is {bound}"
    held = journal_rows(agent.journal_path)
    assert 0 < held < ledger.journaled()  # oldest given way, the rest kept for replay

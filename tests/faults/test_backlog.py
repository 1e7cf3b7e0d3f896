"""A 100,000-event backlog: the worker's memory does not grow with it (RSS at a
1,000- and at a 100,000-event backlog differ by less than 10 MB), the WAL
stays bounded while the workers read, and once the receiver drains the
backlog the delivered rows are purged and the journal file shrinks back."""

from __future__ import annotations

import os

from bus.housekeeping import RESERVE_MAX_BYTES
from bus.ingress import BATCH_BYTES
from tests.e2e.harness import sink
from tests.faults.oracle import Ledger, Tally, journal_file_bytes, journal_rows
from tests.helpers import wait_until

SMALL, LARGE = 1_000, 100_000
PUBLISHERS = 4
RSS_BOUND = 10 * 1024 * 1024  # bytes the worker may grow between the two backlogs
SLOW = 2.0  # s the receiver takes per POST while the backlog builds


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def settled_rss(pid: int) -> int:
    """The worker's RSS once it has stopped growing (three equal readings in a row)."""
    readings: list[int] = []

    def steady():
        readings.append(rss_bytes(pid))
        return len(readings) >= 3 and max(readings[-3:]) - min(readings[-3:]) < 256 * 1024

    wait_until(steady, 10, interval=0.2, what="the worker's RSS to settle")
    return max(readings[-3:])


def test_memory_flat_wal_bounded_journal_shrinks_after_100k_backlog(make_agent, receiver, loadgen, report):
    receiver.respond(200, delay=SLOW)  # slow, not down: the worker keeps sending, its window full
    agent = make_agent(
        [sink("cdr", receiver.url, bulk=True, bulk_max_events=1000, bulk_interval=0.2)],
        agent={"retention_hours": 0},  # the drained rows go at once (not kept for replay)
        tuning={"max_background_posts": 1_000_000, "response_timeout": 30},
    )
    ledger = Ledger(agent.journal_path)
    tally = Tally(receiver)
    pid = agent.sink_status("cdr")["pid"]

    def backlog_seen(n: int) -> bool:
        st = agent.sink_status("cdr")
        return st["backlog"] + st["delivered"] >= n

    ledger.add_published("s", loadgen(agent.publish_endpoint, "s", SMALL).wait())
    wait_until(lambda: ledger.journaled() == SMALL and backlog_seen(SMALL), 15, what="a 1,000-event backlog")
    rss_small = settled_rss(pid)

    wal_peak = 0
    gens = [loadgen(agent.publish_endpoint, f"l{i}", (LARGE - SMALL) // PUBLISHERS) for i in range(PUBLISHERS)]
    for g in gens:
        ledger.add_published(g.prefix, g.wait(timeout=60))

    def large_backlog() -> bool:
        nonlocal wal_peak
        wal_peak = max(wal_peak, os.path.getsize(agent.journal_path + "-wal"))
        return ledger.journaled() == LARGE and backlog_seen(LARGE)

    wait_until(large_backlog, 30, interval=0.1, what="a 100,000-event backlog")
    rss_large = settled_rss(pid)
    assert agent.sink_status("cdr")["pid"] == pid, "the worker was restarted: its RSS figures mean nothing"
    backlog_large = agent.sink_status("cdr")["backlog"]
    file_peak = journal_file_bytes(agent.journal_path)

    receiver.respond(200)
    wait_until(lambda: ledger.conserved(tally), 90, interval=0.5, what="the backlog delivered")
    wait_until(lambda: journal_rows(agent.journal_path) == 0, 15, what="the delivered rows purged")
    wait_until(lambda: journal_file_bytes(agent.journal_path) < file_peak // 4, 15, what="the journal file to shrink")
    file_after = journal_file_bytes(agent.journal_path)

    v = ledger.verdict(
        "100k backlog drained",
        tally,
        received_counter=ledger.received_counter(agent),
        check_offsets=False,
        extra=f"backlog_at_peak={backlog_large}",
    )
    report(v.line())
    report(
        f"worker RSS: {rss_small / 2**20:.1f} MiB at a {SMALL}-event backlog, {rss_large / 2**20:.1f} MiB at "
        f"{LARGE} (difference {(rss_large - rss_small) / 2**20:+.1f} MiB, bound 10 MiB)"
    )
    report(
        f"journal: peak {file_peak / 2**20:.1f} MiB (WAL peak {wal_peak / 2**20:.1f} MiB), "
        f"{file_after / 2**20:.2f} MiB after the drain"
    )
    assert not v.problems, v.problems
    assert rss_large - rss_small < RSS_BOUND
    # checkpointed (automatically) at half the reserve, plus at most one more batch before that
    assert wal_peak <= RESERVE_MAX_BYTES // 2 + BATCH_BYTES

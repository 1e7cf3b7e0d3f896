"""Housekeeping: a delivered row is removed only once every sink's cursor has
passed it; one sink that cannot deliver keeps the rows for itself. With
retention_hours = 0 (nothing kept for replay) the rows go as soon as every sink
has them; retention itself is tested in tests/bus/test_broker_retention.py."""

from __future__ import annotations

import time

from bus.housekeeping import HOUSEKEEPING_INTERVAL
from tests.e2e.harness import sink
from tests.faults.oracle import Ledger, Tally, journal_cursors, journal_rows
from tests.helpers import wait_until

N = 1000


def test_rows_are_purged_only_when_every_sink_has_them(make_agent, make_receiver, proxy, receiver, loadgen, report):
    fast = make_receiver()
    proxy.refuse()  # sink "slow" (behind the proxy, in front of `receiver`) cannot connect
    agent = make_agent(
        [sink("fast", fast.url), sink("slow", proxy.url)],
        agent={"retention_hours": 0},
        tuning={"initial_retry_backoff": 0.1, "max_retry_backoff": 600},
    )
    ledger = Ledger(agent.journal_path)
    fast_tally, slow_tally = Tally(fast), Tally(receiver)
    ledger.add_published("h", loadgen(agent.publish_endpoint, "h", N).wait())
    wait_until(lambda: ledger.conserved(fast_tally), 20, what="sink fast to have everything")
    # fast's cursor has passed every row (it commits within 0.1 s, the broker purges every second) ...
    wait_until(
        lambda: journal_cursors(agent.journal_path)["fast"] == ledger.head0 + N,
        10,
        what="sink fast's cursor at the head",
    )
    wait_until(lambda: agent.status()["bus"]["received"] == N, 5, what="the broker's report")
    # ... and still all N rows stay there for sink slow, through more than one purge round
    deadline = time.monotonic() + 1.5 * HOUSEKEEPING_INTERVAL
    while time.monotonic() < deadline:
        assert journal_rows(agent.journal_path) == N
        time.sleep(0.1)
    assert agent.sink_status("slow")["backlog"] == N

    proxy.accept()
    wait_until(lambda: ledger.conserved(slow_tally), 30, what="sink slow to catch up")
    wait_until(lambda: journal_rows(agent.journal_path) == 0, 10, what="every delivered row purged")
    for name, tally in (("fast", fast_tally), ("slow", slow_tally)):
        v = ledger.verdict(
            f"purge waits for every sink ({name})", tally, received_counter=ledger.received_counter(agent)
        )
        report(v.line())
        assert not v.problems, v.problems

"""SIGTERM of the whole agent in the middle of a 500-event backlog, then a
fresh start: the backlog survives in the journal and is delivered, POSTs that
were in flight at the stop come again under the same webhook-id."""

from __future__ import annotations

import signal

from tests.e2e.harness import sink
from tests.faults.oracle import Ledger, Tally
from tests.helpers import wait_until

BACKLOG = 500


def test_sigterm_and_restart_with_a_backlog_lose_nothing(make_agent, receiver, loadgen, report):
    receiver.respond(200, delay=0.01)  # a slow receiver: the backlog is being worked off when the stop comes
    agent = make_agent([sink("cdr", receiver.url, max_in_flight=1)])
    ledger = Ledger(agent.journal_path)
    tally = Tally(receiver)
    gen = loadgen(agent.publish_endpoint, "r", BACKLOG, mix=True)
    ledger.add_published("r", gen.wait())
    wait_until(lambda: ledger.journaled() == BACKLOG, 10, what="the backlog journaled")
    wait_until(lambda: tally.update().distinct >= 50, 15, what="delivery under way")
    first = agent.status()
    assert first["bus"]["received"] == BACKLOG
    assert agent.stop(signal.SIGTERM) == 0
    before_restart = tally.update().distinct
    assert before_restart < BACKLOG, "the backlog was gone before the stop: nothing was tested"

    receiver.respond(200)
    agent.start()
    wait_until(lambda: ledger.conserved(tally), 30, what="the backlog delivered after the restart")
    v = ledger.verdict(
        "SIGTERM + restart of the agent", tally, check_order=True, extra=f"delivered_before_stop={before_restart}"
    )
    report(v.line())
    assert not v.problems, v.problems
    # the second run starts its own eventsink_started at seq 1 and ends the first with its stop event
    assert tally.lifecycle["eventsink_started"] == 2
    assert tally.lifecycle["eventsink_ended"] == 1
    assert agent.status()["bus"]["received"] == 0  # the new run journaled nothing new

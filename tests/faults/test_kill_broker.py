"""kill -9 of the broker while publishers keep sending: the supervisor starts a
new one; what was published while no broker listened may be lost (PUB/SUB has
no acknowledgement), but every event that was journaled is delivered, and the
broker's received counter still equals what the journal holds."""

from __future__ import annotations

import os
import signal

from tests.e2e.harness import sink, wait_until
from tests.faults.oracle import Ledger, Tally

PER_PUBLISHER = 2000
RATE = 500  # events/s per publisher: four seconds of traffic


def test_kill_9_of_the_broker_loses_nothing_journaled(make_agent, receiver, loadgen, report):
    agent = make_agent([sink("cdr", receiver.url, max_in_flight=4)])
    ledger = Ledger(agent.journal_path)
    tally = Tally(receiver)
    gens = [loadgen(agent.publish_endpoint, prefix, PER_PUBLISHER, rate=RATE, mix=True) for prefix in ("b1", "b2")]
    # well into the flow: some events journaled (and delivered), most still to come
    wait_until(lambda: ledger.journaled() >= 800, 15, what="the flow to be under way")
    old = agent.status()["bus"]["broker_pid"]
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: agent.status()["bus"]["broker_pid"] not in (None, old), 10, what="a new broker")
    before_kill = ledger.journaled()
    for g in gens:
        ledger.add_published(g.prefix, g.wait())
    # the new broker journals the rest of the flow
    wait_until(lambda: ledger.journaled() > before_kill + 500, 15, what="journaling to resume")
    wait_until(lambda: ledger.conserved(tally), 30, what="every journaled event delivered")
    status = agent.status()
    v = ledger.verdict("kill -9 broker", tally, received_counter=ledger.received_counter(agent),
                       extra=f"lost_while_down={sum(ledger.published.values()) - ledger.journaled()} "
                             f"broker_restarts={status['bus']['broker_restarts']}")
    report(v.line())
    assert not v.problems, v.problems
    assert status["bus"]["broker_restarts"] == 1

"""What docs/bus.md promises conference processes that publish through `Publisher`:
events published before the agent's first start are all delivered, once, in
order; three graceful restarts of the agent, three `kill -9`s of the broker,
and three `kill -9`s of the whole agent followed by a start, each under 500
events/s, lose and journal twice nothing (numbered publishing: the Publisher
resends its ring to each new broker, the journal drops what it already holds),
and everything journaled is delivered."""

from __future__ import annotations

import json
import os
import signal

from tests.e2e.harness import sink
from tests.faults.oracle import Ledger, Tally
from tests.helpers import wait_until

BEFORE_START = 500
RATE = 500  # events/s, through each fault
FLOW = 8000  # sixteen seconds at RATE: room for three faults and the restarts between them
BETWEEN_FAULTS = 500  # events journaled after one fault (or the start) before the next


def delivered_fids(receiver) -> list[str]:
    """The fids of the non-bulk, accepted POSTs, in arrival order (lifecycle events left out)."""
    fids = []
    for req in list(receiver.requests):
        if req.problem is None and 200 <= req.status < 300:
            ev = json.loads(req.body)
            if not ev.get("event", "").startswith("eventsink_"):
                fids.append(ev["data"]["fid"])
    return fids


def settle(pred, timeout: float, what: str) -> None:
    """Wait (bounded) for PRED; what never comes is counted as lost by the caller, then asserted."""
    try:
        wait_until(pred, timeout, interval=0.2, what=what)
    except AssertionError:
        pass


def counts(ledger: Ledger, tally: Tally) -> tuple[int, int, int]:
    """(published, lost, duplicated): published but never delivered; journaled more than once."""
    tally.update()
    published = sum(ledger.published.values())
    return published, published - tally.distinct, ledger.journaled() - tally.distinct


def test_events_published_before_the_agent_starts_are_delivered_once_in_order(make_agent, receiver, loadgen, report):
    agent = make_agent([sink("cdr", receiver.url, max_in_flight=1)], start=False)
    gen = loadgen(agent.publish_endpoint, "s", BEFORE_START, wait=False)
    assert gen.wait_published() == BEFORE_START  # all of it published while no agent existed
    agent.start()
    ledger = Ledger(agent.journal_path, head0=0)  # the journal was created by this start
    tally = Tally(receiver)
    ledger.add_published("s", gen.wait())
    assert gen.result["pending"] == 0 and gen.result["dropped"] == 0
    wait_until(
        lambda: ledger.conserved(tally) and tally.distinct >= BEFORE_START,
        30,
        what="the events published before the start delivered",
    )
    published, lost, duplicated = counts(ledger, tally)
    v = ledger.verdict(
        "published before the agent's first start (Publisher)",
        tally,
        check_order=True,
        extra=f"lost={lost} duplicated={duplicated}",
    )
    report(v.line())
    assert not v.problems, v.problems
    assert delivered_fids(receiver) == [f"s-{i}" for i in range(BEFORE_START)]  # once each, in order


def start_flow(make_agent, receiver, loadgen, prefix: str):
    """An agent, its ledger and tally, and one publisher process sending FLOW events at RATE through Publisher."""
    # A broker down for its restart backoff (up to 2 s by the third kill) comes back to a
    # Publisher's kept events all at once: more than the default 1000 waiting would (rightly) raise
    # the concurrency alarm and stop the sink, which is not what these rows are about.
    agent = make_agent([sink("cdr", receiver.url, max_in_flight=4)], tuning={"max_background_posts": 100_000})
    ledger = Ledger(agent.journal_path)
    tally = Tally(receiver)
    return agent, ledger, tally, loadgen(agent.publish_endpoint, prefix, FLOW, rate=RATE, mix=True)


def run_faults(agent, ledger: Ledger, gen, fault, times: int = 3) -> None:
    """Inject FAULT TIMES times into the flow of GEN, each once BETWEEN_FAULTS more events are journaled."""
    for _ in range(times):
        mark = ledger.journaled()
        wait_until(lambda: ledger.journaled() >= mark + BETWEEN_FAULTS, 30, what="the flow under way")
        assert gen.proc.poll() is None, "the flow ended before the fault: nothing was tested"
        fault()


# The broker drains its ingress until it is quiet before it exits (bus/broker.py) and the
# Publisher keeps what it is given while no agent is subscribed: nothing lost, nothing twice.
def test_three_graceful_restarts_under_500_per_s_lose_and_duplicate_nothing(make_agent, receiver, loadgen, report):
    agent, ledger, tally, gen = start_flow(make_agent, receiver, loadgen, "g")

    def restart():
        assert agent.stop(signal.SIGTERM) == 0
        agent.start()

    run_faults(agent, ledger, gen, restart)
    ledger.add_published("g", gen.wait(timeout=90))
    assert gen.result["pending"] == 0 and gen.result["dropped"] == 0
    settle(lambda: ledger.conserved(tally) and tally.distinct >= FLOW, 30, what="the whole flow delivered")
    published, lost, duplicated = counts(ledger, tally)
    v = ledger.verdict(
        "3 x SIGTERM + start under 500/s (Publisher)",
        tally,
        extra=f"lost={lost} duplicated={duplicated} redelivered={tally.duplicates}",
    )
    report(v.line())
    assert not v.problems, v.problems
    assert (published, lost, duplicated) == (FLOW, 0, 0)


def kill_rows(
    agent, ledger: Ledger, tally: Tally, gen, name: str, fault, report, *, one_supervisor: bool = True
) -> dict:
    """Three FAULTs into the flow; then the whole flow journaled once and delivered; the status after.
    ONE_SUPERVISOR: the received counter covers the whole test (not when the supervisor was killed too)."""
    run_faults(agent, ledger, gen, fault)
    ledger.add_published(gen.prefix, gen.wait(timeout=90))
    assert gen.result["pending"] == 0 and gen.result["dropped"] == 0
    settle(lambda: ledger.conserved(tally) and tally.distinct >= FLOW, 30, what="the whole flow delivered")
    published, lost, duplicated = counts(ledger, tally)
    status = agent.status()
    v = ledger.verdict(
        name,
        tally,
        received_counter=ledger.received_counter(agent) if one_supervisor else None,
        extra=f"lost={lost} duplicated={duplicated} dropped_repeats={duplicates_metric(agent)}",
    )
    report(v.line())
    assert not v.problems, v.problems
    assert (published, lost, duplicated) == (FLOW, 0, 0)
    return status


def duplicates_metric(agent) -> float:
    for line in agent.metrics().splitlines():
        if line.startswith("eventsink_bus_duplicates_total "):
            return float(line.split()[1])
    raise AssertionError("no eventsink_bus_duplicates_total in /metrics")


def test_three_broker_kills_under_500_per_s_lose_and_duplicate_nothing(make_agent, receiver, loadgen, report):
    agent, ledger, tally, gen = start_flow(make_agent, receiver, loadgen, "k")

    def kill_broker():
        old = agent.status()["bus"]["broker_pid"]
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: agent.status()["bus"]["broker_pid"] not in (None, old), 30, what="a new broker")

    status = kill_rows(agent, ledger, tally, gen, "3 x kill -9 broker under 500/s (Publisher)", kill_broker, report)
    assert status["bus"]["broker_restarts"] == 3
    assert duplicates_metric(agent) > 0  # the rings came again and were dropped, not journaled


def test_three_whole_agent_kills_and_starts_under_500_per_s_lose_and_duplicate_nothing(
    make_agent, receiver, loadgen, report
):
    agent, ledger, tally, gen = start_flow(make_agent, receiver, loadgen, "a")

    def kill_agent():
        agent.kill_all()  # kill -9 of the supervisor, broker and workers
        agent.start()

    kill_rows(
        agent,
        ledger,
        tally,
        gen,
        "3 x kill -9 agent + start under 500/s (Publisher)",
        kill_agent,
        report,
        one_supervisor=False,
    )

"""What survives an agent start, restart or kill, for a bare PUB socket and for
`Publisher` (the figures to measure before changing either): `python -m tests.faults.measure_publishers`.

For each client (`pub`: a bare pyzmq PUB socket; `publisher`: bus.publisher.Publisher)
and each scenario it runs a real agent, a receiver and one publisher process
(tests/faults/loadgen.py), and prints one line: published, journaled, distinct
delivered, lost (published but never delivered), journaled twice (the same
event taken twice from the bus: a publisher's duplicate) and redelivered (POSTs
repeated under the same webhook-id after a worker kill: at-least-once delivery,
not a publisher's duplicate). Scenarios:

- `before_start`: 500 events published before the agent's first start;
- `graceful`: SIGTERM + start of the whole agent under 500 events/s;
- `kill_broker`: kill -9 of the broker under 500 events/s (the supervisor restarts it);
- `kill_agent`: kill -9 of the supervisor, broker and workers under 500 events/s, then a start.

A measurement, not a test: it never fails, it reports (the fault suite's tests
assert what must hold).
"""

from __future__ import annotations

import argparse
import os
import signal

from tests.e2e.harness import Agent, sink
from tests.faults.conftest import LoadGen
from tests.faults.oracle import Ledger, Tally
from tests.helpers import wait_until
from tools.receiver import Receiver

RATE = 500  # events/s while the agent is stopped, restarted or killed
FLOW = 3000  # events in the flow: six seconds at RATE
BEFORE_START = 500
FAULT_AFTER = 500  # journaled events before the fault is injected
SETTLE_SECONDS = 15.0


def settle(ledger: Ledger, tally: Tally, published: int) -> None:
    """Wait (bounded) until everything published is delivered; what never comes is the loss."""
    try:
        wait_until(
            lambda: ledger.conserved(tally) and tally.distinct >= published,
            SETTLE_SECONDS,
            interval=0.2,
            what="every published event delivered",
        )
    except AssertionError:
        pass  # lost events: the figures say how many


def before_start(agent: Agent, client: str) -> LoadGen:
    gen = LoadGen(agent.publish_endpoint, "s", BEFORE_START, client=client, wait=False)
    gen.wait_published()
    agent.start()
    return gen


def under_flow(agent: Agent, client: str, ledger: Ledger, fault) -> LoadGen:
    agent.start()
    gen = LoadGen(agent.publish_endpoint, "f", FLOW, rate=RATE, client=client)
    wait_until(lambda: ledger.journaled() >= FAULT_AFTER, 30, what="the flow under way")
    fault(agent)
    return gen


def graceful(agent: Agent) -> None:
    agent.stop(signal.SIGTERM)
    agent.start()


def kill_broker(agent: Agent) -> None:
    old = agent.status()["bus"]["broker_pid"]
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: agent.status()["bus"]["broker_pid"] not in (None, old), 15, what="a new broker")


def kill_agent(agent: Agent) -> None:
    agent.kill_all()
    agent.start()


FAULTS = {"graceful": graceful, "kill_broker": kill_broker, "kill_agent": kill_agent}


def measure(scenario: str, client: str) -> str:
    with Receiver() as receiver:
        agent = Agent([sink("cdr", receiver.url, max_in_flight=1)])
        try:
            tally = Tally(receiver)
            ledger = Ledger(agent.journal_path, head0=0)  # a fresh journal: its head starts at 0
            if scenario == "before_start":
                gen = before_start(agent, client)
            else:
                gen = under_flow(agent, client, ledger, FAULTS[scenario])
            published = gen.wait(timeout=90)
            settle(ledger, tally, published)
            tally.update()
            journaled = ledger.journaled()
            lost = published - tally.distinct
            journaled_twice = journaled - tally.distinct
            return (
                f"{scenario:12} {client:9} published={published} journaled={journaled} "
                f"delivered_distinct={tally.distinct} lost={lost} journaled_twice={journaled_twice} "
                f"redelivered={tally.duplicates} "
                f"pending_at_close={gen.result.get('pending', 0)}"
            )
        finally:
            gen_proc = locals().get("gen")
            if gen_proc is not None:
                gen_proc.stop()
            agent.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.faults.measure_publishers")
    p.add_argument("--scenario", action="append", choices=["before_start", *FAULTS])
    p.add_argument("--client", action="append", choices=["pub", "publisher"])
    p.add_argument("--repeat", type=int, default=1)
    a = p.parse_args(argv)
    for scenario in a.scenario or ["before_start", *FAULTS]:
        for client in a.client or ["pub", "publisher"]:
            for _ in range(a.repeat):
                print(measure(scenario, client), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Everything at once: while two publishers send, a random fault every few
hundred milliseconds (kill -9 of a worker or of the broker, the receiver
refusing, answering 503, stalling or resetting mid-answer), two sinks (one
pipelined and bulk). Every journaled event reaches both sinks."""

from __future__ import annotations

import os
import random
import signal
import threading

from tests.e2e.harness import sink
from tests.faults.flapper import Flapper
from tests.faults.oracle import Ledger, Tally
from tests.helpers import wait_until

PER_PUBLISHER = 1500
RATE = 250  # events/s per publisher: six seconds of traffic
ACTIONS = ("kill worker a", "kill worker b", "kill broker", "flap", "flap", "heal")


class Chaos(threading.Thread):
    def __init__(self, agent, flapper: Flapper, rng: random.Random):
        super().__init__(daemon=True, name="chaos")
        self.agent, self.flapper, self.rng = agent, flapper, rng
        self.done = threading.Event()
        self.log: list[str] = []
        self.errors: list[str] = []

    def act(self, action: str) -> None:
        status = self.agent.status()
        if action.startswith("kill worker"):
            name = action.rsplit(" ", 1)[1]
            pid = next(s["pid"] for s in status["sinks"] if s["name"] == name)
            if pid:
                os.kill(pid, signal.SIGKILL)
        elif action == "kill broker":
            if status["bus"]["broker_pid"]:
                os.kill(status["bus"]["broker_pid"], signal.SIGKILL)
        elif action == "flap":
            action = self.rng.choice(Flapper.FAULTS)
            self.flapper.set(action)
        else:
            self.flapper.set(None)
        self.log.append(action)

    def run(self) -> None:
        for _ in range(1000):
            if self.done.wait(self.rng.uniform(0.2, 0.8)):  # fault timing, not synchronisation
                break
            try:
                self.act(self.rng.choice(ACTIONS))
            except (OSError, StopIteration, AssertionError) as exc:  # a pid gone meanwhile, status mid-restart
                self.errors.append(f"{type(exc).__name__}: {exc}")
        self.flapper.set(None)

    def stop(self) -> None:
        self.done.set()
        self.join(10)


def test_chaos_loses_nothing_journaled(make_agent, receiver, proxy, make_receiver, loadgen, report):
    seed = random.randrange(1 << 30)
    other = make_receiver()
    agent = make_agent(
        [
            sink("a", proxy.url, max_in_flight=1),
            sink("b", other.url, max_in_flight=8, bulk=True, bulk_max_events=50, bulk_interval=0.1),
        ],
        tuning={
            "response_timeout": 1,
            "connection_timeout": 1,
            "initial_retry_backoff": 0.1,
            "max_retry_backoff": 120,
            "max_background_posts": 100_000,
        },
    )
    ledger = Ledger(agent.journal_path)
    tallies = {"a": Tally(receiver), "b": Tally(other)}
    chaos = Chaos(agent, Flapper(receiver, proxy), random.Random(seed))
    gens = [loadgen(agent.publish_endpoint, p, PER_PUBLISHER, rate=RATE, mix=True) for p in ("x", "y")]
    chaos.start()
    try:
        for g in gens:
            ledger.add_published(g.prefix, g.wait())
    finally:
        chaos.stop()
    for name, tally in tallies.items():
        wait_until(lambda: ledger.conserved(tally), 60, what=f"every journaled event delivered to sink {name}")
    received = ledger.received_counter(agent)
    for name, tally in tallies.items():
        v = ledger.verdict(
            f"chaos (seed {seed}), sink {name}",
            tally,
            received_counter=received,
            check_offsets=name == "a",
            check_order=name == "a",
            extra=f"faults={len(chaos.log)}: {' '.join(sorted(set(chaos.log)))}",
        )
        report(v.line())
        assert not v.problems, v.problems

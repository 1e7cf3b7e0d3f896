"""The flapping receiver of the fault suite: `Flapper` cycles a receiver, and the fault proxy in
front of it, through 503 (with and without Retry-After), refused connections, 10 s stalls and
connections reset in the middle of the answer (tests/faults/proxy.py), with healthy spells between.

Given the agent's count of POST attempts by outcome (`attempt_outcomes`), each fault holds
until the agent has met it (an attempt ended by it; for a reset, the proxy reset an answer)
and each healthy spell until a POST has succeeded again. So every fault reaches the agent
whatever the timing of its probes, and the sink's backoff, reset by that success, never grows
over more than one fault: by the clock alone, a probe could miss a fault, or fail through
several in a row while the wait doubles each time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

FAULT_SECONDS = 0.7  # each fault lasts at least this long ...
HEALTHY_SECONDS = 0.5  # ... then the receiver answers normally for at least this long
HOLD_LIMIT = 30.0  # s: the longest a state waits to be met after its least time; then it moves on
POLL_SECONDS = 0.1  # how often the agent's counts are read while a state waits to be met
# The outcome of an attempt that met the fault (a reset is seen at the proxy).
OUTCOME_OF = {
    "503": "http_error",
    "503-retry-after": "http_error",
    "refuse": "connection_error",
    "stall": "timeout",
    None: "success",
}


def attempt_outcomes(agent, sink: str) -> dict[str, float]:
    """The agent's POST attempts of SINK by outcome, from one read of its /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        s.labels["outcome"]: s.value
        for fam in text_string_to_metric_families(agent.metrics())
        for s in fam.samples
        if s.name == "eventsink_post_attempts_total" and s.labels.get("sink") == sink
    }


class Flapper(threading.Thread):
    """Cycles the receiver (behind the proxy) through the faults until stopped. Without OUTCOMES
    (`set` only, as the chaos test uses it) no state waits to be met."""

    FAULTS = ("503", "refuse", "stall", "reset", "503-retry-after")

    def __init__(self, receiver, proxy, outcomes: Callable[[], dict[str, float]] | None = None):
        super().__init__(daemon=True, name="flapper")
        self.receiver, self.proxy, self.outcomes = receiver, proxy, outcomes
        self.done = threading.Event()
        self.applied: list[str] = []
        self.reached: list[str] = []  # the faults the agent met, in order
        self.unmet: list[str] = []  # states given up after HOLD_LIMIT ("healthy" for a healthy spell)

    def set(self, fault: str | None) -> None:
        rx, px = self.receiver, self.proxy
        rx.respond(200)
        px.mode = "pass"
        px.accept()
        if fault == "503":
            rx.respond(503)
        elif fault == "503-retry-after":
            rx.respond(503, {"Retry-After": "1"})
        elif fault == "refuse":
            px.refuse()
        elif fault == "stall":
            rx.respond(200, delay=10.0)  # far beyond response_timeout = 1 s
        elif fault == "reset":
            px.mode = "reset"

    def cycled(self) -> bool:
        """Every fault has reached the agent at least once."""
        return set(self.FAULTS) <= set(self.reached)

    def _met(self, fault: str | None, before: dict[str, float], resets: int) -> bool:
        if self.outcomes is None:
            return True
        if fault == "reset":
            return self.proxy.resets > resets
        key = OUTCOME_OF[fault]
        return self.outcomes().get(key, 0) > before.get(key, 0)

    def _hold(self, fault: str | None, seconds: float) -> bool:
        """FAULT (None: healthy) for SECONDS, then until the agent has met it; False once stopped."""
        before, resets = (self.outcomes() if self.outcomes else {}), self.proxy.resets
        self.set(fault)
        if fault:
            self.applied.append(fault)
        if self.done.wait(seconds):
            return False
        give_up = time.monotonic() + HOLD_LIMIT
        while not self._met(fault, before, resets):
            if time.monotonic() >= give_up:
                self.unmet.append(fault or "healthy")
                return True
            if self.done.wait(POLL_SECONDS):
                return False
        if fault:
            self.reached.append(fault)
        return True

    def run(self) -> None:
        try:
            for i in range(1000):
                if not self._hold(self.FAULTS[i % len(self.FAULTS)], FAULT_SECONDS) or not self._hold(
                    None, HEALTHY_SECONDS
                ):
                    break
        finally:  # healthy again even if reading the agent's counts failed: the test then names the faults it saw
            self.set(None)

    def stop(self) -> None:
        self.done.set()
        self.join(5)

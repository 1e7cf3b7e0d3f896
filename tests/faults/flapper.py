"""The flapping receiver of the fault suite: `Flapper` cycles a receiver, and the fault proxy in
front of it, through 503 (with and without Retry-After), refused connections, 10 s stalls and
connections reset in the middle of the answer (tests/faults/proxy.py), with healthy spells between."""

from __future__ import annotations

import threading

FAULT_SECONDS = 0.7  # each fault lasts this long ...
HEALTHY_SECONDS = 0.5  # ... then the receiver answers normally for this long


class Flapper(threading.Thread):
    """Cycles the receiver (behind the proxy) through the faults until stopped."""

    FAULTS = ("503", "refuse", "stall", "reset", "503-retry-after")

    def __init__(self, receiver, proxy):
        super().__init__(daemon=True, name="flapper")
        self.receiver, self.proxy = receiver, proxy
        self.done = threading.Event()
        self.applied: list[str] = []

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

    def run(self) -> None:
        for i in range(1000):
            fault = self.FAULTS[i % len(self.FAULTS)]
            self.set(fault)
            self.applied.append(fault)
            if self.done.wait(FAULT_SECONDS):
                break
            self.set(None)
            if self.done.wait(HEALTHY_SECONDS):
                break
        self.set(None)

    def stop(self) -> None:
        self.done.set()
        self.join(5)

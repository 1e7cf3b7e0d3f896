"""What a sink's deliveries add up to: counters, histograms, the two rings, and the failure log.

Owns `DeliveryCounts` (attempts by outcome, events delivered, failed attempts, the
`post_duration` and `event_age` histograms of docs/internals.md's worker report, the ring
of recent attempts, `recent`: sinks/attempts.py, and of the POSTs as sent, `sent`:
sinks/deliveries.py), filled once per ended attempt by the dispatcher (sinks/delivery.py),
and `FailureLog` (failures on `support.events`, rate-limited). Counting only: which Post
goes next, and when, is the dispatcher's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from common.internal import Histogram
from common.logs import SUPPORT, RateLimited, suppressed_note
from common.vocabulary import POST_OUTCOMES
from sinks.attempts import AttemptRing
from sinks.deliveries import DeliveryRing
from sinks.http import Result
from sinks.post import Post

support_log = logging.getLogger(SUPPORT)


class DeliveryCounts:
    """Every ended attempt of one sink, counted (`count`) and kept in the two rings."""

    def __init__(self):
        self.attempts = dict.fromkeys(POST_OUTCOMES, 0)
        self.delivered = 0  # events (a bulk envelope counts its inner events)
        self.failures = 0  # attempts that did not end in a 2xx
        self.post_duration = Histogram()
        self.event_age = Histogram()
        self.recent = AttemptRing()  # the last POST attempts, for `eventsinkctl attempts`
        self.sent = DeliveryRing()  # the last POSTs as sent, for `eventsinkctl deliveries` and followers

    def count(self, post: Post, result: Result) -> None:
        self.attempts[result.outcome] += 1
        self.post_duration.observe(result.duration)
        wall = time.time()  # one clock read for the ring and event_age
        self.recent.record(wall, post, result)
        self.sent.record(wall, post, result)
        if result.ok:
            self.delivered += len(post.times)  # post.count, without a call per POST
            for t in post.times:
                if t > 0:  # 0: the publisher's time was not a number
                    self.event_age.observe(max(0.0, wall - t))
        else:
            self.failures += 1

    def snapshot(self) -> dict:
        """The counts as the worker's report carries them."""
        return {
            "delivered": self.delivered,
            "failures": self.failures,
            "attempts": dict(self.attempts),
            "post_duration": self.post_duration.snapshot(),
            "event_age": self.event_age.snapshot(),
        }


class FailureLog:
    """Logs failures on support.events: the first of a kind, then at most one line per kind every EVERY s."""

    def __init__(self, sink: str, every: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.sink = sink
        self._rate = RateLimited(every, clock)  # one kind per (outcome, status)
        self.failing = 0  # consecutive failures

    def failure(self, url: str, result: Result, then: str) -> None:
        self.failing += 1
        suppressed = self._rate.allow((result.outcome, result.status))
        if suppressed is not None:
            support_log.warning(
                "sink %s: POST to %s failed: %s: %s; %s%s",
                self.sink,
                url,
                result.outcome,
                result.detail or "no detail",
                then,
                suppressed_note(suppressed),
            )

    def success(self, url: str) -> None:
        if self.failing:
            support_log.info("sink %s: POST to %s succeeded after %d failed attempts", self.sink, url, self.failing)
            self.failing = 0
            self._rate.forget()

"""The counters the children's reports carry (`HistFigures`, `WorkerCounters`),
addable so that a child's figures can be folded across restarts.

The reports themselves (`WorkerReport`, `BrokerReport`, `Hist`) and their
decoding (`parse_report`) are common/link.py's (docs/internals.md,
"Supervisor link").

Counters in a report are cumulative for the life of one child process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.internal import HISTOGRAM_BOUNDS
from common.link import Hist, WorkerReport

# ------------------------------------------------------------ counters


@dataclass
class HistFigures:
    """A HIST snapshot (cumulative bucket counts over HISTOGRAM_BOUNDS), addable."""

    buckets: list[int] = field(default_factory=lambda: [0] * len(HISTOGRAM_BOUNDS))
    sum: float = 0.0
    count: int = 0

    @classmethod
    def of(cls, hist: Hist | None) -> HistFigures:
        if hist is None or len(hist.buckets) != len(HISTOGRAM_BOUNDS):
            return cls()
        return cls(list(hist.buckets), hist.sum, hist.count)

    def plus(self, other: HistFigures) -> HistFigures:
        return HistFigures(
            [a + b for a, b in zip(self.buckets, other.buckets, strict=True)],
            self.sum + other.sum,
            self.count + other.count,
        )


@dataclass
class WorkerCounters:
    """The cumulative figures of one worker process (or a sum of several)."""

    delivered: int = 0
    failures: int = 0
    attempts: dict[str, int] = field(default_factory=dict)
    post_duration: HistFigures = field(default_factory=HistFigures)
    event_age: HistFigures = field(default_factory=HistFigures)
    dead_lettered: int = 0  # events set aside as dead letters

    @classmethod
    def of(cls, r: WorkerReport) -> WorkerCounters:
        return cls(
            r.delivered,
            r.failures,
            dict(r.attempts),
            HistFigures.of(r.post_duration),
            HistFigures.of(r.event_age),
            r.dead_lettered,
        )

    def plus(self, other: WorkerCounters) -> WorkerCounters:
        attempts = dict(self.attempts)
        for k, v in other.attempts.items():
            attempts[k] = attempts.get(k, 0) + v
        return WorkerCounters(
            self.delivered + other.delivered,
            self.failures + other.failures,
            attempts,
            self.post_duration.plus(other.post_duration),
            self.event_age.plus(other.event_age),
            self.dead_lettered + other.dead_lettered,
        )

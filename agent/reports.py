"""The reports children send on the supervisor link (docs/internals.md,
"Supervisor link"), decoded in one place (`parse_report`), and the counters
they carry, addable so that a child's figures can be folded across restarts.

Counters in a report are cumulative for the life of one child process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from common.internal import HISTOGRAM_BOUNDS


# ------------------------------------------------------------ reports


class Hist(msgspec.Struct):
    buckets: list[int]
    sum: float
    count: int


class WorkerReport(msgspec.Struct, kw_only=True):
    type: str
    role: str
    sink: str
    pid: int
    publisher: str
    backlog: int = 0
    in_flight: int = 0
    delivered: int = 0
    failures: int = 0
    current_backoff: float = 0.0
    next_backoff: float = 0.0
    cursor: int = 0
    head: int = 0
    attempts: dict[str, int] = msgspec.field(default_factory=dict)
    post_duration: Hist | None = None
    event_age: Hist | None = None


class BrokerReport(msgspec.Struct, kw_only=True):
    type: str
    role: str
    pid: int
    received: int = 0
    rejected: dict[str, int] = msgspec.field(default_factory=dict)
    journal_bytes: int = 0
    journal_full: bool = False
    head: int = 0
    transactions: int = 0


def parse_report(msg: dict) -> WorkerReport | BrokerReport:
    """A decoded link message as a typed report; raises ValueError when it is not one."""
    role = msg.get("role")
    try:
        if role == "worker":
            return msgspec.convert(msg, WorkerReport)
        if role == "broker":
            return msgspec.convert(msg, BrokerReport)
    except msgspec.ValidationError as exc:
        raise ValueError(f"bad {role} report: {exc}") from None
    raise ValueError(f"report with unknown role {str(role)[:40]!r}")


# ------------------------------------------------------------ counters


@dataclass
class HistFigures:
    """A HIST snapshot (cumulative bucket counts over HISTOGRAM_BOUNDS), addable."""

    buckets: list[int] = field(default_factory=lambda: [0] * len(HISTOGRAM_BOUNDS))
    sum: float = 0.0
    count: int = 0

    @classmethod
    def of(cls, hist: Hist | None) -> "HistFigures":
        if hist is None or len(hist.buckets) != len(HISTOGRAM_BOUNDS):
            return cls()
        return cls(list(hist.buckets), hist.sum, hist.count)

    def plus(self, other: "HistFigures") -> "HistFigures":
        return HistFigures([a + b for a, b in zip(self.buckets, other.buckets)], self.sum + other.sum, self.count + other.count)


@dataclass
class WorkerCounters:
    """The cumulative figures of one worker process (or a sum of several)."""

    delivered: int = 0
    failures: int = 0
    attempts: dict[str, int] = field(default_factory=dict)
    post_duration: HistFigures = field(default_factory=HistFigures)
    event_age: HistFigures = field(default_factory=HistFigures)

    @classmethod
    def of(cls, r: WorkerReport) -> "WorkerCounters":
        return cls(r.delivered, r.failures, dict(r.attempts), HistFigures.of(r.post_duration), HistFigures.of(r.event_age))

    def plus(self, other: "WorkerCounters") -> "WorkerCounters":
        attempts = dict(self.attempts)
        for k, v in other.attempts.items():
            attempts[k] = attempts.get(k, 0) + v
        return WorkerCounters(
            self.delivered + other.delivered,
            self.failures + other.failures,
            attempts,
            self.post_duration.plus(other.post_duration),
            self.event_age.plus(other.event_age),
        )

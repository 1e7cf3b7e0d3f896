"""What the supervisor knows about each child: one `SinkSlot` per sink at this
node's location and one `BrokerSlot`, plus the typed reports children send
(docs/internals.md, "Supervisor link") and the counters folded across child
restarts.

Counters in a report are cumulative for the life of one child process. A slot
keeps `base` = the last figures of every dead child of that sink, the figures
of a child being shut down (`old`) and those of the current child; the totals
shown in status and metrics are their sum, so they never go backwards.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field

import msgspec

from common.backoff import Backoff
from common.config import SinkConfig
from common.internal import HISTOGRAM_BOUNDS
from agent.states import PublisherState

log = logging.getLogger("agent.supervisor")

# Worker and broker restarts (DESIGN: "restarts a crashed one with its own backoff policy").
RESTART_POLICY = Backoff(initial=0.5, maximum=30.0)
BACKOFF_RESET_AFTER = 10.0  # s a child must run before its restart backoff is forgotten
STORM_RESTARTS = 5  # this many automatic restarts ...
STORM_WINDOW = 60.0  # ... within this many seconds is a restart storm (logged, at most once a window)


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


# ------------------------------------------------------------ slots


@dataclass
class Retiring:
    """A child being shut down on purpose (restart, removal, agent stop): SIGKILL at kill_at."""

    handle: object
    kill_at: float
    counters: WorkerCounters = field(default_factory=WorkerCounters)
    killed: bool = False


class RestartTracker:
    """Automatic restarts of one child role: the count, the backoff, and restart-storm detection."""

    def __init__(self) -> None:
        self.restart_backoff: Backoff = RESTART_POLICY
        self.restart_at: float | None = None
        self.restarts = 0  # automatic restarts after an unexpected exit
        self.recent: collections.deque[float] = collections.deque(maxlen=STORM_RESTARTS * 4)
        self.storm_logged_at: float | None = None

    def count_restart(self, now: float) -> bool:
        """Count one automatic restart; True when this makes a restart storm not yet logged this window."""
        self.restarts += 1
        self.recent.append(now)
        in_window = sum(1 for t in self.recent if now - t <= STORM_WINDOW)
        if in_window < STORM_RESTARTS:
            return False
        if self.storm_logged_at is not None and now - self.storm_logged_at < STORM_WINDOW:
            return False
        self.storm_logged_at = now
        return True

    def restarts_in_window(self, now: float) -> int:
        return sum(1 for t in self.recent if now - t <= STORM_WINDOW)

    def forget_failures_if_stable(self, started_at: float | None, now: float) -> None:
        """Reset the restart backoff once the current child has run BACKOFF_RESET_AFTER seconds."""
        if started_at is not None and self.restart_backoff.failures and now - started_at >= BACKOFF_RESET_AFTER:
            self.restart_backoff = self.restart_backoff.succeeded()


class SinkSlot(RestartTracker):
    """One sink at this node: its config, its worker process, its publisher state, its figures."""

    def __init__(self, config: SinkConfig):
        super().__init__()
        self.name = config.name
        self.config = config
        # publisher state: moved only by agent.states.change_state
        self.state = PublisherState.STARTING
        self.state_since: float | None = None
        self.state_reason = "configured"
        self.publisher_running = False
        # processes
        self.handle = None  # the current worker, if any
        self.started_at: float | None = None
        self.old: Retiring | None = None  # the previous worker, being shut down
        self.pending_spawn = False  # start a worker once `old` has exited
        self.removed = False  # dropped by a reload: shut down, then its cursor row goes
        self.last_attempted_restart: str | None = None
        # figures
        self.base = WorkerCounters()
        self.current = WorkerCounters()
        self.report: WorkerReport | None = None  # the current worker's last report
        self.backlog = 0  # kept from the last report after a worker dies: the backlog is durable
        self.backlog_armed = True
        self.stop_sent_at: float | None = None
        self.worker_view: tuple = (None, None, None)  # (node, tuning, sink config) the current worker runs with
        # Of the credentials the current worker was given (http_options.credentials_digest).
        self.credentials_digest: str | None = None

    @property
    def pid(self) -> int | None:
        return self.handle.pid if self.handle is not None else None

    def totals(self) -> WorkerCounters:
        total = self.base.plus(self.current)
        if self.old is not None:
            total = total.plus(self.old.counters)
        return total

    @property
    def in_flight(self) -> int:
        return self.report.in_flight if self.report is not None and self.handle is not None else 0

    @property
    def current_backoff(self) -> float:
        return self.report.current_backoff if self.report is not None and self.handle is not None else 0.0

    def take_report(self, r: WorkerReport) -> str:
        """Fold a report into the slot: 'current', 'old' (from the worker being shut down) or 'stale'."""
        if self.handle is not None and r.pid == self.handle.pid:
            self.report = r
            self.current = WorkerCounters.of(r)
            self.backlog = r.backlog
            return "current"
        if self.old is not None and r.pid == self.old.handle.pid:
            self.old.counters = WorkerCounters.of(r)
            self.backlog = r.backlog if self.handle is None else self.backlog
            return "old"
        return "stale"

    def attach(self, handle, now: float) -> None:
        """A freshly spawned worker becomes the current one."""
        self.handle = handle
        self.started_at = now
        self.report = None
        self.current = WorkerCounters()
        self.backlog_armed = False
        self.stop_sent_at = None

    def detach(self) -> None:
        """The current worker is gone: its figures join the base."""
        self.base = self.base.plus(self.current)
        self.current = WorkerCounters()
        self.handle = None
        self.started_at = None
        self.report = None

    def retire(self, kill_at: float) -> Retiring | None:
        """Move the current worker to `old` (being shut down); its figures travel with it."""
        if self.handle is None:
            return None
        self.old = Retiring(self.handle, kill_at, self.current)
        self.current = WorkerCounters()
        self.handle = None
        self.started_at = None
        self.report = None
        return self.old

    def old_exited(self) -> None:
        assert self.old is not None
        self.base = self.base.plus(self.old.counters)
        self.old = None


class BrokerSlot(RestartTracker):
    """The broker process and its figures (received/rejected folded across broker restarts)."""

    def __init__(self) -> None:
        super().__init__()
        self.handle = None
        self.started_at: float | None = None
        self.crashed = False
        self.old: Retiring | None = None
        self.base_received = 0
        self.base_rejected: dict[str, int] = {}
        self.report: BrokerReport | None = None
        self.journal_bytes = 0
        self.journal_full = False
        self.last_head: int | None = None  # the journal head in the latest broker report

    @property
    def pid(self) -> int | None:
        return self.handle.pid if self.handle is not None else None

    @property
    def received(self) -> int:
        return self.base_received + (self.report.received if self.report else 0)

    @property
    def rejected(self) -> dict[str, int]:
        out = dict(self.base_rejected)
        if self.report:
            for k, v in self.report.rejected.items():
                out[k] = out.get(k, 0) + v
        return out

    def take_report(self, r: BrokerReport) -> bool:
        if self.handle is None or r.pid != self.handle.pid:
            return False
        if self.report is None and self.last_head is not None:
            # A killed broker may have journaled events after its last report: the new broker
            # started at head r.head - r.received, so count what lies between as received too.
            unreported = r.head - r.received - self.last_head
            if unreported > 0:
                self.base_received += unreported
        self.last_head = max(self.last_head or 0, r.head)
        self.report = r
        self.journal_bytes = r.journal_bytes
        self.journal_full = r.journal_full
        return True

    def attach(self, handle, now: float) -> None:
        self.handle = handle
        self.started_at = now
        self.crashed = False
        self.report = None

    def detach(self) -> None:
        if self.report is not None:
            self.base_received += self.report.received
            for k, v in self.report.rejected.items():
                self.base_rejected[k] = self.base_rejected.get(k, 0) + v
        self.handle = None
        self.started_at = None
        self.report = None

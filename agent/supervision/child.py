"""One child process of the agent as the supervisor sees it: a `SinkChild` per
sink at this node's location and one `BrokerChild`.

A child owns its process handle (and the one being shut down on purpose, with
its SIGKILL deadline), its state (moved only by agent.supervision.states.change_state),
its restart backoff (the one `Backoff` policy, RESTART_POLICY) with
restart-storm detection, and its counters folded across restarts, so that
totals in status and metrics never go backwards. Spawning, reaping and the
deadline checks are its methods; which argv and spec to start it with, and
what an exit means for the agent, are the fleet's (agent/supervision/fleet.py).

Nothing here needs a real process: a handle is anything with `pid`, `poll()`,
`terminate()` and `kill()` (agent/supervision/processes.py, tests/agent/supervisor_fakes.py).
"""

from __future__ import annotations

import collections
import logging
import sys
from dataclasses import dataclass, field

from agent.supervision.counters import WorkerCounters
from agent.supervision.deadline import Deadline, Schedule
from agent.supervision.processes import exit_description
from agent.supervision.states import ChildState, change_state
from common.backoff import Backoff
from common.config_types import SinkConfig
from common.link import BrokerReport, WorkerReport
from common.logs import SUPPORT, RateLimited

log = logging.getLogger("agent.supervisor")
support = logging.getLogger(SUPPORT)

S = ChildState
WORKER_ARGV = [sys.executable, "-m", "sinks.worker"]
BROKER_ARGV = [sys.executable, "-m", "bus.broker"]
# Worker and broker restarts (README, "Behaviour where the contract is silent": their own backoff policy).
RESTART_POLICY = Backoff(initial=0.5, maximum=30.0)
BACKOFF_RESET_AFTER = 10.0  # s a child must run before its restart backoff is forgotten
STORM_RESTARTS = 5  # this many automatic restarts ...
STORM_WINDOW = 60.0  # ... within this many seconds is a restart storm (logged, at most once a window)


@dataclass
class Retiring:
    """A process being shut down on purpose (restart, removal, agent stop): SIGKILL at kill_at."""

    handle: object
    kill_at: float
    counters: object = None  # its figures: WorkerCounters of a worker, the last BrokerReport of a broker
    killed: bool = False
    kill_timer: Deadline = field(default_factory=Deadline)  # kill_at, as a timer of the loop

    def done(self) -> None:
        """It exited or was killed: its SIGKILL deadline no longer matters."""
        self.kill_timer.clear()


class Child:
    """What the broker and a sink's worker have in common: process, state, backoff, deadlines."""

    argv: list[str]
    label: str  # how the log names it: "broker", "sink cdr"

    def __init__(self, name: str) -> None:
        self.name = name
        # state: moved only by agent.supervision.states.change_state
        self.state = S.STARTING
        self.state_since: float | None = None
        self.state_reason = "configured"
        self.publisher_running = False
        # processes
        self.handle = None  # the current process, if any
        self.started_at: float | None = None
        self.retiring: Retiring | None = None  # the previous process, being shut down
        self.pending_spawn = False  # start a process once `retiring` has exited
        self.removed = False  # a sink dropped by a reload: shut down, then its cursor row goes
        # restarts
        self.restart_backoff: Backoff = RESTART_POLICY
        self._schedule: Schedule | None = None
        self._restart = Deadline()  # a crashed child's restart, once its backoff has passed
        self.restarts = 0  # automatic restarts after an unexpected exit
        self._recent: collections.deque[float] = collections.deque(maxlen=STORM_RESTARTS * 4)
        self._storm_log = RateLimited(STORM_WINDOW)

    @property
    def process_name(self) -> str:
        """The launcher's name for the process (shown in its log lines)."""
        return self.name

    def bind(self, schedule: Schedule | None) -> None:
        """Keep this child's deadlines as timers of SCHEDULE's loop (agent/supervision/deadline.py)."""
        self._schedule = schedule
        self._restart.bind(schedule)

    @property
    def restart_at(self) -> float | None:
        return self._restart.when

    @restart_at.setter
    def restart_at(self, when: float | None) -> None:
        self._restart.set(when)

    @property
    def pid(self) -> int | None:
        return self.handle.pid if self.handle is not None else None

    def change_state(self, new: ChildState, reason: str, now: float) -> None:
        change_state(self, new, reason, now=now)

    # ---------------------------------------------------------------- spawning

    def spawn(self, launcher, spec: bytes, now: float, *, automatic: bool) -> None:
        """Start a process with SPEC on its stdin; raises OSError when it cannot be started."""
        self.pending_spawn = False
        if self.state is not S.STARTING:
            self.change_state(S.STARTING, "restarting" if automatic else "starting", now)
        if automatic:
            self._count_restart(now)
        self.attach(launcher.spawn(list(self.argv), spec, self.process_name), now)
        log.info(
            "%s: started (pid %d)%s", self.label, self.handle.pid, f", restart #{self.restarts}" if automatic else ""
        )

    def _count_restart(self, now: float) -> None:
        """Count one automatic restart; a restart storm is logged at most once a window."""
        self.restarts += 1
        self._recent.append(now)
        in_window = sum(1 for t in self._recent if now - t <= STORM_WINDOW)
        if in_window < STORM_RESTARTS or self._storm_log.allow(now=now) is None:
            return
        support.warning(
            "%s: restart storm: restarted %d times in the last minute; next waits back off up to %g s",
            self.label,
            in_window,
            self.restart_backoff.maximum,
        )

    def restart_due(self, now: float) -> bool:
        """No process, none shutting down, and a crash backoff elapsed or a start pending."""
        if self.handle is not None or self.retiring is not None:
            return False
        crashed_due = self.state is S.CRASHED and self.restart_at is not None and now >= self.restart_at
        return crashed_due or self.pending_spawn

    # ---------------------------------------------------------------- shutting down and reaping

    def retire(self, kill_at: float):
        """Move the current process to `retiring` (shut down on purpose); returns its handle."""
        handle = self.handle
        if handle is None:
            return None
        self.retiring = Retiring(handle, kill_at, self._take_counters(), kill_timer=Deadline(self._schedule))
        self.retiring.kill_timer.set(kill_at)
        self.handle = None
        self.started_at = None
        return handle

    def reap(self, now: float) -> tuple[int, int] | None:
        """(pid, exit code) when the current process has just exited unbidden; it is detached."""
        if self.retiring is not None and (code := self.retiring.handle.poll()) is not None:
            log.info(
                "%s: process (pid %d) exited after shutdown: %s",
                self.label,
                self.retiring.handle.pid,
                exit_description(code),
            )
            self._fold(self.retiring.counters)
            self.retiring.done()
            self.retiring = None
        if self.handle is None or (code := self.handle.poll()) is None:
            return None
        pid = self.handle.pid
        # Here, not on a tick: a child that ran long enough is forgiven before its crash counts.
        self.forget_failures_if_stable(now)
        self.detach()
        return pid, code

    def kill_if_overdue(self, now: float) -> None:
        r = self.retiring
        if r is not None and not r.killed and now >= r.kill_at:
            log.warning("%s: process (pid %d) did not exit in time: SIGKILL", self.label, r.handle.pid)
            r.handle.kill()
            r.killed = True
            r.done()

    def forget_failures_if_stable(self, now: float) -> None:
        """Reset the restart backoff once the current process has run BACKOFF_RESET_AFTER seconds."""
        if (
            self.started_at is not None
            and self.restart_backoff.failures
            and now - self.started_at >= BACKOFF_RESET_AFTER
        ):
            self.restart_backoff = self.restart_backoff.succeeded()

    @property
    def busy(self) -> bool:
        """A process of this child is alive or still shutting down."""
        return self.handle is not None or self.retiring is not None

    def handles(self) -> list:
        return [h for h in (self.handle, self.retiring.handle if self.retiring else None) if h is not None]

    # ---------------------------------------------------------------- counters (per role)

    def attach(self, handle, now: float) -> None:
        self.handle = handle
        self.started_at = now

    def detach(self) -> None:
        self._fold(self._take_counters())
        self.handle = None
        self.started_at = None

    def _take_counters(self):
        """The current process's figures, handed over (it is leaving)."""
        return WorkerCounters()

    def _fold(self, counters) -> None:
        """Figures of a process that is gone join the base."""


@dataclass(frozen=True)
class ReplayStart:
    """Where a replay begins: the first journal offset to send again, and the sink's cursor shadow,
    which must go with the old cursor (it vouches for acknowledgements above it)."""

    offset: int
    shadow_file: str


class SinkChild(Child):
    """One sink at this node: its config, its worker process, its publisher state, its figures.

    Figures: `base` = the last figures of every dead worker of this sink, plus those of
    the worker being shut down and of the current one."""

    argv = WORKER_ARGV

    def __init__(self, config: SinkConfig):
        super().__init__(config.name)
        self.label = f"sink {config.name}"
        self.config = config
        self.last_attempted_restart: str | None = None
        self.base = WorkerCounters()
        self.current = WorkerCounters()
        self.report: WorkerReport | None = None  # the current worker's last report
        self.backlog = 0  # kept from the last report after a worker dies: the backlog is durable
        self.backlog_armed = True
        self.stop_sent_at: float | None = None
        self.stop_resend = Deadline()  # the next stop_publisher, while the worker says its publisher runs
        # What the current worker was given: (node, tuning, sink config) and a digest of its
        # credentials (http_options.credentials_digest); and the credentials it should have.
        self.given_view: tuple | None = None
        self.given_digest: str | None = None
        self.wanted_digest: str | None = None
        # A replay's start (agent/server/actions/replay.py): placed on the cursor when the next worker spawns.
        self.replay_start: ReplayStart | None = None
        self.dead_letters = 0  # held in the journal (agent/supervision/worker_reports.py refreshes it)
        self.dead_letters_seen: tuple[int, int, int] = (0, 0, 0)  # (pid, set aside, redriven) last reported

    @property
    def process_name(self) -> str:
        return f"worker {self.name}"

    def bind(self, schedule: Schedule | None) -> None:
        super().bind(schedule)
        self.stop_resend.bind(schedule)

    def totals(self) -> WorkerCounters:
        total = self.base.plus(self.current)
        if self.retiring is not None:
            total = total.plus(self.retiring.counters)
        return total

    @property
    def in_flight(self) -> int:
        return self.report.in_flight if self.report is not None and self.handle is not None else 0

    @property
    def current_backoff(self) -> float:
        return self.report.current_backoff if self.report is not None and self.handle is not None else 0.0

    def take_report(self, r: WorkerReport) -> str:
        """Fold a report in: 'current', 'old' (from the worker being shut down) or 'stale'."""
        if self.handle is not None and r.pid == self.handle.pid:
            self.report = r
            self.current = WorkerCounters.of(r)
            self.backlog = r.backlog
            return "current"
        if self.retiring is not None and r.pid == self.retiring.handle.pid:
            self.retiring.counters = WorkerCounters.of(r)
            self.backlog = r.backlog if self.handle is None else self.backlog
            return "old"
        return "stale"

    def attach(self, handle, now: float) -> None:
        super().attach(handle, now)
        self.report = None
        self.current = WorkerCounters()
        self.backlog_armed = False
        self.stop_sent_at = None

    def _take_counters(self) -> WorkerCounters:
        taken, self.current, self.report = self.current, WorkerCounters(), None
        return taken

    def _fold(self, counters: WorkerCounters) -> None:
        self.base = self.base.plus(counters)


class BrokerChild(Child):
    """The broker process and its figures (received/rejected/duplicates folded across broker restarts)."""

    argv = BROKER_ARGV
    label = "broker"

    def __init__(self) -> None:
        super().__init__("broker")
        self.base_received = 0
        self.base_rejected: dict[str, int] = {}
        self.base_duplicates = 0
        self.report: BrokerReport | None = None
        self.journal_bytes = 0
        self.journal_full = False
        self.retained = 0  # delivered events the journal keeps for replay, as last reported
        self.last_head: int | None = None  # the journal head in the latest broker report

    @property
    def received(self) -> int:
        return self.base_received + (self.report.received if self.report else 0)

    @property
    def duplicates(self) -> int:
        """Numbered messages dropped as repeats, across broker restarts."""
        return self.base_duplicates + (self.report.duplicates if self.report else 0)

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
        self.retained = r.retained
        return True

    def attach(self, handle, now: float) -> None:
        super().attach(handle, now)
        self.report = None

    def _take_counters(self) -> BrokerReport | None:
        taken, self.report = self.report, None
        return taken

    def _fold(self, report: BrokerReport | None) -> None:
        if report is not None:
            self.base_received += report.received
            self.base_duplicates += report.duplicates
            for k, v in report.rejected.items():
                self.base_rejected[k] = self.base_rejected.get(k, 0) + v

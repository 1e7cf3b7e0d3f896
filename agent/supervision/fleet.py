"""Every child process of the agent: the broker, one worker per local sink
(plus sinks a reload removed whose worker is still shutting down) and the
console while `[console] listen` is set, and what
happens to them as a group: starting one with its spec, shutting one down on
purpose (a `shutdown` message, SIGKILL after CHILD_GRACE), reaping exits,
restarting crashed ones after their backoff, and the two-phase graceful stop
(workers first, then the broker, all within STOP_BUDGET).

Each deadline here (a restart after its backoff, a SIGKILL after CHILD_GRACE)
is a timer of the supervisor's loop (common/loop.py) that its child sets and
clears (agent/supervision/deadline.py), and each live child's exit fd (a pidfd) is a
handler of that loop: the supervisor calls `reap` and `tick` when woken by one
of them, a report or a command, never on a clock tick, so nothing here may
rely on being called periodically.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from agent.supervision.child import BrokerChild, Child, SinkChild
from agent.supervision.console_child import ConsoleChild
from agent.supervision.processes import exit_description
from agent.supervision.states import ChildState
from common.config_types import ConfigError, ConsoleConfig, SinkConfig
from common.internal import CHILD_GRACE, worker_identity
from sinks import shadow

log = logging.getLogger("agent.supervisor")

S = ChildState
CHILD_POLL_INTERVAL = 0.1  # s between two looks at a child whose exit cannot be watched (no pidfd)
STOP_BUDGET = 9.0  # s the whole graceful stop may take (the contract allows 10)
BROKER_JOURNAL_CORRUPT = 3  # the broker's exit code for a corrupt journal (bus/broker.py)


class GracefulStop:
    """Progress of a graceful stop: workers first, then the broker."""

    def __init__(self, started: float):
        self.started = started
        self.phase = "workers"

    @property
    def done(self) -> bool:
        return self.phase == "done"


class Fleet:
    """The broker and the sink workers. `spec_for(child)` gives the bytes a child starts with.

    LOOP (common/loop.py; None in tests of the state alone) gets the children's deadlines as
    timers and their exit fds as handlers; each calls ON_DUE, the supervisor's turn of work."""

    def __init__(
        self, launcher, spec_for: Callable[[Child], bytes], loop: Any = None, on_due: Callable[[], None] | None = None
    ):
        self.launcher = launcher
        self.spec_for = spec_for
        self.loop = loop
        self.on_due = on_due or (lambda: None)
        self._watched: dict[Any, Any] = {}  # handle -> its exit fd (a loop handler) or its polling timer
        self.link = None  # the supervisor link, once bound
        self.journal = None
        self.broker = self._adopt(BrokerChild())
        self.sinks: dict[str, SinkChild] = {}
        self.removed: list[SinkChild] = []  # dropped by reload, still shutting down
        self.console: ConsoleChild | None = None  # while [console] listen is set (or it is shutting down)
        self.stopping: GracefulStop | None = None

    def all(self) -> list[Child]:
        return [self.broker, *self.sinks.values(), *self.removed, *self._console()]

    def _console(self) -> list[ConsoleChild]:
        return [self.console] if self.console is not None else []

    def sink_or_removed(self, name: str) -> SinkChild | None:
        return self.sinks.get(name) or next((s for s in self.removed if s.name == name), None)

    def handles(self) -> list:
        return [h for child in self.all() for h in child.handles()]

    def schedule(self, when: float):
        """A timer of the loop that wakes the supervisor at WHEN (agent/supervision/deadline.py's Schedule)."""
        return self.loop.call_at(when, self.on_due) if self.loop is not None else None

    def _adopt(self, child: Child) -> Child:
        child.bind(self.schedule)
        return child

    # ---------------------------------------------------------------- exits

    def watch_exits(self) -> None:
        """Each live process's exit fd is a loop handler; a reaped one's is dropped (then closed)."""
        if self.loop is None:
            return
        live = self.handles()
        for handle in [h for h in self._watched if h not in live]:
            self._unwatch(handle)
        for handle in live:
            if handle not in self._watched:
                self._watch(handle)

    def _watch(self, handle) -> None:
        fd = handle.exit_fd()
        if fd is None:  # no pidfd: look at it again shortly
            self._watched[handle] = self.loop.call_later(CHILD_POLL_INTERVAL, self._poll_exit, handle)
            return
        self._watched[handle] = fd
        self.loop.add_handler(fd, lambda events: self.on_due())

    def _poll_exit(self, handle) -> None:
        self._watched.pop(handle, None)
        self.on_due()  # reaps it if it exited; watch_exits looks at it again otherwise

    def _unwatch(self, handle) -> None:
        watched = self._watched.pop(handle)
        if isinstance(watched, int):
            self.loop.remove_handler(watched)
            handle.release()  # closed only once out of the poller: the number may be reused at once
        else:
            watched.cancel()

    def unwatch_all(self) -> None:
        for handle in list(self._watched):
            self._unwatch(handle)

    # ---------------------------------------------------------------- starting

    def spawn(self, child: Child, now: float, *, automatic: bool = False) -> None:
        if isinstance(child, SinkChild) and child.replay_start is not None:
            self._place_replay(child)
        try:
            child.spawn(self.launcher, self.spec_for(child), now, automatic=automatic)
        except (ConfigError, OSError) as exc:
            if child.state is not S.STARTING:
                child.change_state(S.STARTING, "starting", now)
            child.change_state(S.CRASHED, f"cannot start: {exc}", now)

    def add(self, sink: SinkConfig, now: float) -> SinkChild:
        """A sink newly at this node: its worker starts once no removed namesake is shutting down."""
        child = self._adopt(SinkChild(sink))
        self.sinks[sink.name] = child
        child.pending_spawn = True
        if not self._name_busy(child):
            self.spawn(child, now)
        return child

    def restart(self, child: SinkChild, now: float) -> None:
        """A fresh worker for CHILD (an operator's restart): the current one is shut down first."""
        child.restart_backoff = child.restart_backoff.succeeded()
        self.retire(child, stop_event=False, now=now)
        child.change_state(S.STARTING, "restart requested", now)
        child.pending_spawn = True
        if child.retiring is None and not self._name_busy(child):
            self.spawn(child, now)

    def set_console(self, settings: ConsoleConfig | None, now: float) -> None:
        """Start, restart (new settings) or shut down the console to match SETTINGS (None: off)."""
        current = self.console
        if current is not None and not current.removed and current.settings == settings:
            return
        if current is not None:
            self._retire_console(current, now)
        if settings is None:
            if current is not None:
                current.removed = True
                log.info("console: turned off (no [console] listen)")
                if not current.busy:
                    self.console = None
            return
        child = self._adopt(ConsoleChild(settings))
        if current is not None and current.busy:
            child.retiring, current.retiring = current.retiring, None  # the new one waits for the old one
        self.console = child
        child.pending_spawn = True
        if child.retiring is None:
            self.spawn(child, now)

    def _retire_console(self, child: ConsoleChild, now: float) -> None:
        child.pending_spawn = False
        child.restart_at = None
        handle = child.retire(kill_at=now + CHILD_GRACE)
        if handle is not None:
            handle.terminate()  # the console keeps no state: SIGTERM is its whole shutdown

    def _reap_console(self, now: float) -> None:
        child = self.console
        if child is None:
            return
        exit_ = child.reap(now)
        if child.removed and not child.busy:
            self.console = None
        elif exit_ is not None and not child.removed and self.stopping is None:
            pid, code = exit_
            child.change_state(S.CRASHED, f"(pid {pid}) exited unexpectedly: {exit_description(code)}", now)

    def _place_replay(self, child: SinkChild) -> None:
        """Move a replaying sink's cursor back to just below its window. Only here: no worker of the
        sink runs, so none can commit its old cursor over the new one."""
        start, child.replay_start = child.replay_start, None
        # The shadow goes first: the broker counts what it vouches for as delivered (purge, make
        # room), and a shadow still valid for the rewound cursor would let it delete the window.
        shadow.discard(start.shadow_file)
        try:
            self.journal.set_cursor(child.name, start.offset - 1)
        except sqlite3.Error as exc:
            log.error("sink %s: replay not started: its cursor cannot be moved: %s", child.name, exc)
            return
        log.info("sink %s: replaying from journal offset %d", child.name, start.offset)

    def _name_busy(self, child: Child) -> bool:
        """A removed sink of CHILD's name still has a worker shutting down (never so for the broker,
        even when a sink is named "broker")."""
        return child is not self.broker and any(s.name == child.name and s.busy for s in self.removed)

    # ---------------------------------------------------------------- shutting down

    def retire(self, child: SinkChild, *, stop_event: bool, now: float) -> None:
        """Ask the current worker to shut down (SIGKILL after CHILD_GRACE)."""
        handle = child.retire(kill_at=now + CHILD_GRACE)
        if handle is not None and not self.link.send(
            worker_identity(child.name), {"type": "shutdown", "stop_event": stop_event}
        ):
            handle.terminate()  # not connected: SIGTERM is a shutdown without stop event

    def remove(self, name: str, now: float) -> None:
        """A sink no longer at this node: its worker sends its stop event and exits; then its cursor goes."""
        child = self.sinks.pop(name)
        child.removed = True
        child.pending_spawn = False
        child.restart_at = None
        self.retire(child, stop_event=True, now=now)
        if child.busy:
            self.removed.append(child)

    def drop_stale_cursors(self) -> None:
        keep = set(self.sinks) | {s.name for s in self.removed}
        try:
            self.journal.drop_cursors_except(sorted(keep))
        except sqlite3.Error as exc:
            log.warning("could not drop the cursors of removed sinks (retried on the next removal): %s", exc)

    # ---------------------------------------------------------------- reaping and deadlines

    def reap(self, now: float) -> bool:
        """Reap every exited child; True when the broker found the journal corrupt."""
        corrupt = self._reap_broker(now)
        self._reap_console(now)
        for child in [*self.sinks.values(), *self.removed]:
            exit_ = child.reap(now)
            if child.removed and not child.busy:
                self.removed.remove(child)
                self.drop_stale_cursors()
            if exit_ is not None and not child.removed and self.stopping is None:
                pid, code = exit_
                child.change_state(S.CRASHED, f"worker (pid {pid}) exited unexpectedly: {exit_description(code)}", now)
        return corrupt

    def _reap_broker(self, now: float) -> bool:
        exit_ = self.broker.reap(now)
        if exit_ is None:
            return False
        pid, code = exit_
        if self.stopping is not None:
            log.info("broker (pid %d) exited: %s", pid, exit_description(code))
            return False
        self.broker.change_state(S.CRASHED, f"(pid {pid}) exited unexpectedly: {exit_description(code)}", now)
        if code == BROKER_JOURNAL_CORRUPT:
            return True
        log.error("broker down: events published meanwhile may be lost; journaled ones are not")
        return False

    def tick(self, now: float) -> None:
        """Act on whichever deadline has come: a SIGKILL, a restart, the next phase of a stop."""
        for child in self.all():
            child.kill_if_overdue(now)
        if self.stopping is not None:
            self._stop_tick(now)
            return
        for child in [self.broker, *self.sinks.values(), *(c for c in self._console() if not c.removed)]:
            child.forget_failures_if_stable(now)
            if child.restart_due(now) and not self._name_busy(child):
                self.spawn(child, now, automatic=child.state is S.CRASHED)

    # ---------------------------------------------------------------- graceful stop

    def begin_stop(self, why: str, now: float) -> None:
        if self.stopping is not None:
            log.info("already stopping (%s)", why)
            return
        log.info("stopping (%s): workers first, then the broker", why)
        self.stopping = GracefulStop(now)
        for child in [*self.sinks.values(), *self.removed]:
            child.pending_spawn = False
            child.restart_at = None
            self.retire(child, stop_event=True, now=now)
        for console in self._console():
            self._retire_console(console, now)
        self.broker.restart_at = None

    def _stop_tick(self, now: float) -> None:
        st = self.stopping
        if st.phase == "workers":
            if any(s.busy for s in [*self.sinks.values(), *self.removed, *self._console()]):
                return
            st.phase = "broker"
            handle = self.broker.retire(kill_at=min(now + CHILD_GRACE, st.started + STOP_BUDGET))
            if handle is not None:
                handle.terminate()
        if st.phase == "broker" and not self.broker.busy:
            st.phase = "done"

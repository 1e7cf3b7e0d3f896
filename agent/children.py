"""The half of the supervisor that looks after child processes: starting the
broker and the workers, shutting one down on purpose (restart, removal, agent
stop: a `shutdown` message, SIGKILL after CHILD_GRACE), reaping exits,
restarting crashed children after their backoff, and the two-phase graceful
stop (workers first, then the broker, all within STOP_BUDGET).

`ChildProcesses` is a base class of `agent.supervisor.Supervisor`, which owns
the attributes used here (config, launcher, clock, link, journal, slots,
removed, broker, _stopping) and the main loop that calls `_reap` and `_tick`.
That loop runs when woken (a child's exit fd, a report, a command) or at one
of the deadlines set here (restart_at, kill_at, the broker's stop deadline),
never on a clock tick, so nothing here may rely on being called periodically.
"""

from __future__ import annotations

import logging
import sqlite3
import sys

from common import config as config_mod
from common.config import ConfigError
from common.internal import CHILD_GRACE, worker_identity
from common.logs import SUPPORT
from agent.processes import exit_description
from common.http_options import credentials_digest
from agent.sinkslot import SinkSlot
from agent.states import PublisherState, change_state

log = logging.getLogger("agent.supervisor")
support = logging.getLogger(SUPPORT)

S = PublisherState
WORKER_ARGV = [sys.executable, "-m", "sinks.worker"]
BROKER_ARGV = [sys.executable, "-m", "bus.broker"]
STOP_BUDGET = 9.0  # s the whole graceful stop may take (the contract allows 10)
BROKER_JOURNAL_CORRUPT = 3  # the broker's exit code for a corrupt journal (bus/broker.py)


class Stopping:
    """Progress of a graceful stop: workers first, then the broker."""

    def __init__(self, started: float):
        self.started = started
        self.phase = "workers"
        self.broker_deadline: float | None = None
        self.broker_killed = False


class ChildProcesses:
    """Starting, stopping, reaping and restarting the broker and the workers."""

    def _spawn_broker(self, now: float) -> None:
        b = self.broker
        b.restart_at = None
        try:
            spec = config_mod.encode_spec(config_mod.resolve_secrets(self.config))
            handle = self.launcher.spawn(list(BROKER_ARGV), spec, "broker")
        except (ConfigError, OSError) as exc:
            self._broker_failed(f"cannot start: {exc}", now)
            return
        b.attach(handle, now)
        log.info("broker started (pid %d)", handle.pid)

    def _broker_failed(self, why: str, now: float) -> None:
        b = self.broker
        b.crashed = True
        b.restart_backoff = b.restart_backoff.failed()
        b.restart_at = now + b.restart_backoff.capped()
        log.error("broker %s; restart in %.3g s (events published meanwhile may be lost; journaled ones are not)",
                  why, b.restart_backoff.capped())

    def _spawn_worker(self, slot: SinkSlot, now: float, *, automatic: bool = False) -> None:
        slot.pending_spawn = False
        if slot.state is not S.STARTING:
            change_state(slot, S.STARTING, "restarting the worker" if automatic else "starting the worker", now=now)
        if automatic and slot.count_restart(now):
            support.warning(
                "sink %s: restart storm: the worker was restarted %d times in the last minute; next waits back off up to %g s",
                slot.name, slot.restarts_in_window(now), slot.restart_backoff.maximum,
            )
        try:
            resolved = config_mod.resolve_secrets(self.config)
            # A sink with an active alarm stays stopped across a worker crash: its new worker
            # must not send (not even eventsink_started) before the supervisor could stop it.
            spec = config_mod.encode_spec(resolved, slot.name, paused=bool(self.alarms.for_sink(slot.name)))
            handle = self.launcher.spawn(list(WORKER_ARGV), spec, f"worker {slot.name}")
        except (ConfigError, OSError) as exc:
            change_state(slot, S.CRASHED, f"cannot start the worker: {exc}", now=now)
            return
        slot.attach(handle, now)
        slot.worker_view = self._worker_view(slot.name)
        slot.credentials_digest = credentials_digest(resolved.sink_named(slot.name))
        log.info("sink %s: worker started (pid %d)%s", slot.name, handle.pid, f", restart #{slot.restarts}" if automatic else "")

    def _retire(self, slot: SinkSlot, *, stop_event: bool, now: float) -> None:
        """Ask the current worker to shut down (SIGKILL after CHILD_GRACE); it becomes `slot.old`."""
        handle = slot.handle
        if handle is None:
            return
        slot.retire(kill_at=now + CHILD_GRACE)
        if not self.link.send(worker_identity(slot.name), {"type": "shutdown", "stop_event": stop_event}):
            handle.terminate()  # not connected: SIGTERM is a shutdown without stop event

    def _name_busy(self, name: str) -> bool:
        """A removed sink of this name still has a worker shutting down."""
        return any(s.name == name and (s.handle or s.old) for s in self.removed)

    def _reap(self) -> None:
        now = self.clock.monotonic()
        b = self.broker
        if b.handle is not None and (code := b.handle.poll()) is not None:
            pid = b.handle.pid
            # Here, not on a tick: a child that ran long enough is forgiven before its crash counts.
            b.forget_failures_if_stable(b.started_at, now)
            b.detach()
            if self._stopping is None and code == BROKER_JOURNAL_CORRUPT:
                # Restarting it would only fail again (a crash loop): stop the agent instead; its
                # next start (systemd: Restart=on-failure) moves the journal aside and begins anew.
                support.error("the broker (pid %d) found the journal corrupt: stopping the agent (exit code %d); "
                              "its next start moves the file aside and starts a new journal", pid, code)
                self.exit_code = BROKER_JOURNAL_CORRUPT
                self._begin_stop("the journal is corrupt")
            elif self._stopping is None:
                self._broker_failed(f"(pid {pid}) exited unexpectedly: {exit_description(code)}", now)
            else:
                log.info("broker (pid %d) exited: %s", pid, exit_description(code))
        for slot in list(self.slots.values()) + list(self.removed):
            if slot.old is not None and (code := slot.old.handle.poll()) is not None:
                log.info("sink %s: worker (pid %d) exited after shutdown: %s", slot.name, slot.old.handle.pid, exit_description(code))
                slot.old_exited()
                if slot.removed and slot.handle is None:
                    self.removed.remove(slot)
                    self._drop_stale_cursors()
            if slot.handle is not None and (code := slot.handle.poll()) is not None:
                pid = slot.handle.pid
                slot.forget_failures_if_stable(slot.started_at, now)
                slot.detach()
                if slot.removed or self._stopping is not None:
                    continue
                change_state(slot, S.CRASHED, f"worker (pid {pid}) exited unexpectedly: {exit_description(code)}", now=now)

    def _tick(self) -> None:
        now = self.clock.monotonic()
        for slot in list(self.slots.values()) + self.removed:
            if slot.old is not None and not slot.old.killed and now >= slot.old.kill_at:
                log.warning("sink %s: worker (pid %d) did not exit within %g s: SIGKILL", slot.name, slot.old.handle.pid, CHILD_GRACE)
                slot.old.handle.kill()
                slot.old.killed = True
        if self._stopping is not None:
            self._stop_tick(now)
            return
        b = self.broker
        if b.handle is None and b.restart_at is not None and now >= b.restart_at:
            if b.count_restart(now):
                support.warning("broker restart storm: restarted %d times in the last minute", b.restarts_in_window(now))
            self._spawn_broker(now)
        b.forget_failures_if_stable(b.started_at, now)
        for slot in self.slots.values():
            slot.forget_failures_if_stable(slot.started_at, now)
            if slot.handle is not None or slot.old is not None or self._name_busy(slot.name):
                continue
            if slot.state is S.CRASHED and slot.restart_at is not None and now >= slot.restart_at:
                self._spawn_worker(slot, now, automatic=True)
            elif slot.pending_spawn:
                self._spawn_worker(slot, now)

    def _drop_stale_cursors(self) -> None:
        keep = set(self.slots) | {s.name for s in self.removed}
        try:
            self.journal.drop_cursors_except(sorted(keep))
        except sqlite3.Error as exc:
            log.warning("could not drop the cursors of removed sinks (retried on the next removal): %s", exc)

    # ================================================================ graceful stop

    def _begin_stop(self, why: str) -> None:
        if self._stopping is not None:
            log.info("already stopping (%s)", why)
            return
        now = self.clock.monotonic()
        log.info("stopping (%s): workers first, then the broker", why)
        self._stopping = Stopping(now)
        for slot in list(self.slots.values()) + self.removed:
            slot.pending_spawn = False
            slot.restart_at = None
            self._retire(slot, stop_event=True, now=now)

    def _stop_tick(self, now: float) -> None:
        st = self._stopping
        b = self.broker
        if st.phase == "workers":
            if any(s.old is not None or s.handle is not None for s in list(self.slots.values()) + self.removed):
                return
            st.phase = "broker"
            st.broker_deadline = min(now + CHILD_GRACE, st.started + STOP_BUDGET)
            if b.handle is not None:
                b.handle.terminate()
        if st.phase == "broker":
            if b.handle is None:
                st.phase = "done"
            elif now >= st.broker_deadline and not st.broker_killed:
                log.warning("broker (pid %d) did not exit in time: SIGKILL", b.handle.pid)
                b.handle.kill()
                st.broker_killed = True

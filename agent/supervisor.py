"""The supervisor process: starts the broker and one worker per sink, restarts
them when they die, turns their reports into publisher states and alarms,
carries out operator commands (status, alarms, restart, reload, shutdown),
and serves the control socket and /metrics.

Arbiter style (gunicorn): signal handlers and the control server only put a
command on a queue and wake the main loop (a self-pipe polled together with
the supervisor link's ROUTER); the main loop alone changes state. Every
duration comes from the injected clock.

The loop sleeps until something happens: a signal or a command (the
self-pipe), a child's report (the ROUTER), a child's exit (its pidfd, see
agent/processes.py) or a real deadline (a restart after its backoff, a
SIGKILL after CHILD_GRACE, the broker's stop deadline, a stop_publisher to
resend). There is no tick: children report on change plus a slow heartbeat
(common/internal.py), so an idle agent wakes the supervisor every
HEARTBEAT_INTERVAL per child at most. Other modules: agent/states.py (the
state machine), agent/sinkslot.py (per-child bookkeeping), agent/reload.py
(what a reload changes), agent/runtime.py (dirs, locks, socket files),
agent/childlink.py (the ROUTER), alarms/ (rules and registry),
agent/metrics.py (the Prometheus collector).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import signal
import sqlite3
import threading
from concurrent.futures import Future
from typing import Any, Callable

import msgspec
import zmq

from common import config as config_mod
from common import logs
from common.config import Config, ConfigError, Paths, parse_listen, redact_url
from agent.errors import CommandError
from common.internal import BROKER_IDENTITY, worker_identity
from common.logs import SUPPORT
from agent.processes import PopenLauncher, SystemClock
from agent.children import ChildProcesses, Stopping
from agent.reload import plan_reload
from agent.runtime import RuntimeFiles, StartupError
from common.http_options import credentials_digest
from agent.sinkslot import BrokerReport, BrokerSlot, SinkSlot, WorkerReport, parse_report
from agent.states import STOPPABLE_STATES, PublisherState, change_state
from alarms import rules
from alarms.registry import JOURNAL_FULL, AlarmRegistry, iso_utc

log = logging.getLogger("agent.supervisor")
support = logging.getLogger(SUPPORT)

S = PublisherState
CHILD_POLL_INTERVAL = 0.1  # s between two looks at a child whose exit cannot be watched (no pidfd)
STOP_RESEND_INTERVAL = 1.0  # s between two stop_publisher to a worker that still says "running"


def default_journal(path: str):
    """The journal, checked page by page; a corrupt one is moved aside and a new one started."""
    from bus.journal import Journal, JournalCorrupt, quarantine

    try:
        return Journal(path, verify=True)
    except JournalCorrupt as exc:
        why = str(exc)
    moved, lost = quarantine(path)
    support.error("%s: moved it aside as %s and started a new journal; %s", why, moved,
                  "events it held that not every sink had are lost: how many is unknown" if lost is None
                  else f"up to {lost} events it held that not every sink had are lost")
    return Journal(path)


class Supervisor(ChildProcesses):
    def __init__(
        self,
        config_path: str,
        config: Config,
        *,
        launcher=None,
        clock=None,
        journal_factory: Callable[[str], Any] | None = None,
        serve: bool = True,
    ):
        self.config_path = config_path
        self.config = config
        self.paths = Paths.of(config)
        self.launcher = launcher or PopenLauncher()
        self.clock = clock or SystemClock()
        self.journal_factory = journal_factory or default_journal
        self.serve = serve  # False in unit tests: no control socket, no metrics listener
        self.alarms = AlarmRegistry()
        self.slots: dict[str, SinkSlot] = {}
        self.removed: list[SinkSlot] = []  # dropped by reload, still shutting down
        self.broker = BrokerSlot()
        self.files = RuntimeFiles(self.paths)
        self.journal = None
        self.link = None
        self._ctx: zmq.Context | None = None
        self._poller: zmq.Poller | None = None
        self._watched_fds: set[int] = set()  # child exit fds registered in the poller
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.RLock()  # held by the loop while it works; by metrics while it reads
        self._wake_r = self._wake_w = -1
        self._accepting = True
        self._stopping: Stopping | None = None
        self._control = None
        self._metrics_server = None
        self._old_signals: dict[int, Any] = {}
        self._old_wakeup_fd: int | None = None
        self._owns_sockets = False
        self._served_control = False
        self.exit_code = 0  # of run() after a graceful stop; 3 when the broker found the journal corrupt

    # ================================================================ public API

    def run(self) -> int:
        """Start everything, run until a graceful stop, return the exit code."""
        # Handlers first: a SIGTERM/SIGHUP during start() (default action: die, leaving the
        # children running) is queued and handled by the loop once start() is done.
        self._install_signals()
        try:
            self.start()
        except StartupError as exc:
            log.error("not starting: %s", exc)
            self._restore_signals()
            self.close()
            return 1
        except BaseException:
            self._restore_signals()
            self.close()  # never leave children behind
            raise
        self._arm_wakeup_fd()
        try:
            # The first turn does not block: a signal or a child exit during start() came
            # before the self-pipe was armed for signals.
            done = self.step(block=False)
            while not done:
                done = self.step()
        finally:
            self._restore_signals()
            self.close()
        log.info("agent stopped")
        return self.exit_code

    def request(self, command: str, **params: Any) -> Future:
        """Thread-safe: queue COMMAND for the main loop; the future gets its result or CommandError."""
        future: Future = Future()
        if not self._accepting:
            future.set_exception(CommandError(503, "the agent is not running"))
            return future
        self._queue.put((command, params, future))
        self._wake()
        return future

    def collector(self):
        """A prometheus_client collector of every INTERFACE 7 metric, built from the current state."""
        from agent.metrics import AgentCollector

        return AgentCollector(self.metrics_view)

    # ================================================================ start and stop

    def start(self) -> None:
        """Dirs, locks, journal cursors, the ROUTER, the servers, then the broker and the workers."""
        self.files.prepare()
        try:
            self.journal = self.journal_factory(self.paths.journal_path)
            here = [s.name for s in self.config.sinks_here()]
            for name in here:
                self.journal.ensure_cursor(name)
            self.journal.drop_cursors_except(here)
        except Exception as exc:  # OSError, sqlite3.Error, JournalCorrupt: one line, exit 1
            raise StartupError(f"cannot open the journal {self.paths.journal_path}: {exc}") from None
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._ctx = zmq.Context()
        try:
            self.link = self._make_link()
        except zmq.ZMQError as exc:
            raise StartupError(f"cannot bind {self.paths.supervisor_endpoint}: {exc}") from None
        self._owns_sockets = True  # locks held and our ROUTER bound: the ipc files are ours to remove
        self._poller = zmq.Poller()
        self._poller.register(self.link.socket, zmq.POLLIN)
        self._poller.register(self._wake_r, zmq.POLLIN)
        if self.serve:
            self._start_servers()
        now = self.clock.monotonic()
        self._spawn_broker(now)
        for sink in self.config.sinks_here():
            slot = SinkSlot(sink)
            self.slots[sink.name] = slot
            self._spawn_worker(slot, now)
        log.info(
            "agent started: %d sink(s) at location %s, %d configured elsewhere; broker pid %s; control socket %s; metrics %s",
            len(self.slots), self.config.node.location, len(self.config.sink) - len(self.slots),
            self.broker.pid, self.paths.control_socket, self.config.agent.metrics_listen or "off",
        )

    def _make_link(self):
        from agent.childlink import ChildLink

        return ChildLink(self._ctx, self.paths.supervisor_endpoint)

    def _start_servers(self) -> None:
        try:
            from agent.control import ControlServer
        except ImportError as exc:
            raise StartupError(f"the control socket is not available in this build ({exc})") from None
        try:
            self._control = ControlServer(self.paths.control_socket, self)
            self._control.start()
            self._served_control = True
        except Exception as exc:  # ControlSocketError, OSError: one line, exit 1
            self._control = None
            raise StartupError(f"cannot serve the control socket {self.paths.control_socket}: {exc}") from None
        listen = self.config.agent.metrics_listen
        if listen:
            from prometheus_client import CollectorRegistry

            from agent.metrics import MetricsServer

            host, port = parse_listen(listen) or ("127.0.0.1", 9712)
            registry = CollectorRegistry(auto_describe=False)
            registry.register(self.collector())
            try:
                self._metrics_server = MetricsServer(host, port, registry)
            except OSError as exc:
                raise StartupError(f"cannot serve metrics on {listen}: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Release everything (safe after a partial start): children, servers, sockets, locks."""
        self._accepting = False
        self._fail_queued()
        for handle in self._all_handles():
            if handle.poll() is None:
                log.warning("%s (pid %d) still running at exit: SIGKILL", handle.name, handle.pid)
                handle.kill()
        if self._control is not None:
            self._control.stop()
            self._control = None
        if self._metrics_server is not None:
            self._metrics_server.stop()
            self._metrics_server = None
        if self.link is not None:
            self.link.close()
            self.link = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        if self._owns_sockets:
            self.files.remove_sockets(control=self._served_control)
            self._owns_sockets = False
        self.files.release()

    def _all_handles(self) -> list:
        out = [self.broker.handle] if self.broker.handle is not None else []
        for slot in list(self.slots.values()) + self.removed:
            out += [h for h in (slot.handle, slot.old.handle if slot.old else None) if h is not None]
        return out

    def _fail_queued(self) -> None:
        while True:
            try:
                _, _, future = self._queue.get_nowait()
            except queue.Empty:
                return
            if future is not None and future.set_running_or_notify_cancel():
                future.set_exception(CommandError(503, "the agent is stopping"))

    # ================================================================ signals and wake-ups

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._old_signals[sig] = signal.signal(sig, self._on_signal)
        self._arm_wakeup_fd()

    def _arm_wakeup_fd(self) -> None:
        """Let signals wake the loop through the self-pipe (once start() has made it)."""
        if self._wake_w < 0 or self._old_wakeup_fd is not None or threading.current_thread() is not threading.main_thread():
            return
        self._old_wakeup_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def _restore_signals(self) -> None:
        for sig, handler in self._old_signals.items():
            signal.signal(sig, handler)
        self._old_signals.clear()
        if self._old_wakeup_fd is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            self._old_wakeup_fd = None

    def _on_signal(self, signum: int, frame) -> None:
        # Only enqueue: the main loop acts (SimpleQueue.put is safe in a signal handler).
        self._queue.put(("signal", {"signum": signum}, None))

    def _wake(self) -> None:
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"\0")
            except (BlockingIOError, OSError):
                pass  # already awake, or closing

    def _drain_wake(self) -> None:
        while True:
            try:
                if not os.read(self._wake_r, 512):
                    return
            except (BlockingIOError, OSError):
                return

    # ================================================================ the main loop

    def step(self, block: bool = True) -> bool:
        """One turn of the main loop; True once a graceful stop has finished."""
        self._watch_child_exits()
        timeout = self._poll_timeout() if block else 0.0
        # Rounded up: a deadline 0.4 ms away must not turn into a busy loop of zero-timeout polls.
        self._poller.poll(None if timeout is None else math.ceil(timeout * 1000))
        with self._lock:
            self._drain_wake()
            for identity, msg in self.link.receive():
                self._guard(self._on_message, identity, msg)
            self._drain_requests()
            self._guard(self._reap)
            self._guard(self._tick)
            self._guard(self._resend_stops)
            return self._stopping is not None and self._stopping.phase == "done"

    def _poll_timeout(self) -> float | None:
        """Seconds until the soonest deadline; None (sleep until woken) when there is none."""
        now = self.clock.monotonic()
        deadlines = [d for d in self._deadlines() if d is not None]
        if any(fd is None for fd in self._child_exit_fds()):
            deadlines.append(now + CHILD_POLL_INTERVAL)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _deadlines(self):
        yield self.broker.restart_at
        if self._stopping is not None and not self._stopping.broker_killed:
            yield self._stopping.broker_deadline
        for slot in list(self.slots.values()) + self.removed:
            yield slot.restart_at
            if slot.old is not None and not slot.old.killed:
                yield slot.old.kill_at
            yield self._stop_resend_at(slot)

    def _child_exit_fds(self) -> list[int | None]:
        return [getattr(handle, "exit_fd", lambda: None)() for handle in self._all_handles() if handle.poll() is None]

    def _stop_resend_at(self, slot: SinkSlot) -> float | None:
        """When a stop_publisher is due again: the worker's last report still says its publisher runs."""
        if (slot.state is S.STOPPED and slot.handle is not None and slot.stop_sent_at is not None
                and slot.report is not None and slot.report.publisher == "running"):
            return slot.stop_sent_at + STOP_RESEND_INTERVAL
        return None

    def _resend_stops(self) -> None:
        now = self.clock.monotonic()
        for slot in self.slots.values():
            due = self._stop_resend_at(slot)
            if due is not None and now >= due:
                self._send_stop_publisher(slot, now)

    def _watch_child_exits(self) -> None:
        """Poll every live child's exit fd: a child's death wakes the loop (no tick needed)."""
        wanted = {fd for fd in self._child_exit_fds() if fd is not None}
        for fd in self._watched_fds - wanted:
            self._poller.unregister(fd)
        for fd in wanted - self._watched_fds:
            self._poller.register(fd, zmq.POLLIN)
        self._watched_fds = wanted

    def _guard(self, fn: Callable, *args) -> None:
        try:
            fn(*args)
        except Exception:  # a bug must not take the supervisor (and every sink) down
            log.exception("BUG in the supervisor loop (%s); carrying on", getattr(fn, "__name__", fn))

    # ================================================================ reports

    def _on_message(self, identity: bytes, msg: dict) -> None:
        if msg.get("type") != "report":
            self.link.note_bad(identity, f"message type {str(msg.get('type'))[:40]!r}")
            return
        try:
            report = parse_report(msg)
        except ValueError as exc:
            self.link.note_bad(identity, str(exc)[:200])
            return
        if isinstance(report, BrokerReport):
            if identity == BROKER_IDENTITY:
                self._on_broker_report(report)
            return
        if identity != worker_identity(report.sink):
            self.link.note_bad(identity, f"report for sink {report.sink[:64]!r} from another identity")
            return
        slot = self.slots.get(report.sink) or next((s for s in self.removed if s.name == report.sink), None)
        if slot is not None:
            self._on_worker_report(slot, report)

    def _on_worker_report(self, slot: SinkSlot, r: WorkerReport) -> None:
        if slot.take_report(r) != "current" or slot.removed or self._stopping is not None:
            return
        now = self.clock.monotonic()
        self._bring_config_up_to_date(slot)
        tuning = self.config.tuning
        if not slot.backlog_armed and rules.backlog_arms(r.backlog, tuning.max_background_posts):
            slot.backlog_armed = True
        for decision in rules.sink_alarms(
            publisher=r.publisher, backlog=r.backlog, next_backoff=r.next_backoff,
            max_retry_backoff=tuning.max_retry_backoff, max_background_posts=tuning.max_background_posts,
            backlog_armed=slot.backlog_armed,
        ):
            self._raise_sink_alarm(slot, decision, now)
        if slot.state is S.STARTING:
            active = self.alarms.for_sink(slot.name)
            if active:
                self._stop_publisher(slot, f"alarm {active[0].name} is still active", now)
            elif r.publisher == "running":
                change_state(slot, S.RUNNING, "the worker reports its publisher running", now=now)
        elif slot.state is S.STOPPED and r.publisher == "running":
            if slot.stop_sent_at is None or now - slot.stop_sent_at >= STOP_RESEND_INTERVAL:
                self._send_stop_publisher(slot, now)

    def _on_broker_report(self, r: BrokerReport) -> None:
        if not self.broker.take_report(r):
            return
        decision = rules.journal_alarm(
            journal_full=r.journal_full, journal_bytes=r.journal_bytes, max_journal_mb=self.config.agent.max_journal_mb
        )
        if decision is not None:
            if self.alarms.raise_alarm(decision.name, None, decision.detail, wall=self.clock.wall()):
                support.error("alarm raised: %s: %s", decision.name, decision.detail)
        elif self.alarms.clear(JOURNAL_FULL, None):
            support.warning("alarm cleared: %s: the journal accepts events again", JOURNAL_FULL)

    # ================================================================ alarms and publishers

    def _raise_sink_alarm(self, slot: SinkSlot, decision: rules.Decision, now: float) -> None:
        if self.alarms.raise_alarm(decision.name, slot.name, decision.detail, wall=self.clock.wall()) is None:
            return
        stopping = slot.state in STOPPABLE_STATES
        support.error(
            "alarm raised: %s for sink %s: %s; %s", decision.name, slot.name, decision.detail,
            "stopping its publisher" if stopping else f"publisher already {slot.state}",
        )
        if stopping:
            self._stop_publisher(slot, f"alarm {decision.name}", now)

    def _stop_publisher(self, slot: SinkSlot, reason: str, now: float) -> None:
        change_state(slot, S.STOPPED, reason, now=now)
        self._send_stop_publisher(slot, now)

    def _send_stop_publisher(self, slot: SinkSlot, now: float) -> None:
        slot.stop_sent_at = now
        if not self.link.send(worker_identity(slot.name), {"type": "stop_publisher"}):
            log.warning("sink %s: stop_publisher could not be sent (worker not connected); retrying on its next report", slot.name)

    def _bring_config_up_to_date(self, slot: SinkSlot) -> None:
        """Send an update a worker missed (e.g. a reload while it was still connecting)."""
        if slot.worker_view != self._worker_view(slot.name):
            self._send_update(slot, announce=slot.worker_view[2] != slot.config)

    def _worker_view(self, name: str) -> tuple:
        return (self.config.node, self.config.tuning, self.config.sink_named(name))

    def _send_update(self, slot: SinkSlot, *, announce: bool) -> None:
        if slot.handle is None:
            return  # the next worker starts from the new config
        try:
            resolved = config_mod.resolve_secrets(self.config)
        except ConfigError as exc:
            log.error("sink %s: update not sent: %s", slot.name, exc)
            return
        msg = {"type": "update", "config": msgspec.to_builtins(resolved), "announce": announce}
        if self.link.send(worker_identity(slot.name), msg):
            slot.worker_view = self._worker_view(slot.name)
            slot.credentials_digest = credentials_digest(resolved.sink_named(slot.name))

    # ================================================================ commands

    def _drain_requests(self) -> None:
        while True:
            try:
                command, params, future = self._queue.get_nowait()
            except queue.Empty:
                return
            if future is not None and not future.set_running_or_notify_cancel():
                continue  # the asker gave up
            try:
                result = self._execute(command, params)
            except CommandError as exc:
                if future is not None:
                    future.set_exception(exc)
                continue
            except Exception as exc:
                log.exception("BUG: command %s failed", command)
                if future is not None:
                    future.set_exception(CommandError(500, f"internal error in {command}: {type(exc).__name__}"))
                continue
            if future is not None:
                future.set_result(result)

    def _execute(self, command: str, params: dict) -> Any:
        if command == "signal":
            return self._on_signal_command(params["signum"])
        if command == "status":
            return self.status()
        if command == "alarms":
            return [a.as_dict() for a in self.alarms.active()]
        if command == "shutdown":
            self._begin_stop("shutdown requested")
            return {"stopping": True}
        if self._stopping is not None and command in ("restart", "reload"):
            raise CommandError(503, "the agent is stopping")
        if command == "restart":
            return self.restart(str(params.get("sink", "")))
        if command == "reload":
            return self.reload()
        raise CommandError(400, f"unknown command {command[:40]!r}")

    def _on_signal_command(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            if self._stopping is not None:
                return
            try:
                reply = self.reload()
                log.info("SIGHUP: %s", reply)
            except CommandError as exc:
                for line in exc.problems:
                    log.error("SIGHUP: %s", line)
                log.error("SIGHUP: %s", exc.message)
        else:
            self._begin_stop(name)

    def status(self) -> dict:
        b = self.broker
        return {
            "node": {"address": self.config.node.address, "location": self.config.node.location, "role": self.config.node.role},
            "sinks": [self._sink_status(slot) for slot in self.slots.values()],
            "bus": {
                "received": b.received,
                "rejected": b.rejected,
                "journal_bytes": b.journal_bytes,
                "journal_full": b.journal_full,
                "broker_pid": b.pid,
                "broker_restarts": b.restarts,
            },
        }

    def _sink_status(self, slot: SinkSlot) -> dict:
        totals = slot.totals()
        return {
            "name": slot.name,
            "url": redact_url(slot.config.url),
            "version": slot.config.version,
            "state": slot.state.value,
            "pid": slot.pid,
            "backlog": slot.backlog,
            "in_flight": slot.in_flight,
            "delivered": totals.delivered,
            "failures": totals.failures,
            "current_backoff": slot.current_backoff,
            "last_attempted_restart": slot.last_attempted_restart,
            "alarms": [a.name for a in self.alarms.for_sink(slot.name)],
            "restarts": slot.restarts,
        }

    def restart(self, sink: str) -> dict:
        """Clear the sink's alarms and give it a fresh worker (eventsink_started at seq 1)."""
        slot = self.slots.get(sink)
        if slot is None:
            raise CommandError(404, f"no sink named {sink[:64]!r} runs on this node")
        now = self.clock.monotonic()
        for alarm in self.alarms.clear_sink(sink):
            support.warning("alarm cleared: %s for sink %s (restart requested)", alarm.name, sink)
        slot.last_attempted_restart = iso_utc(self.clock.wall())
        slot.restart_backoff = slot.restart_backoff.succeeded()
        self._retire(slot, stop_event=False, now=now)
        change_state(slot, S.STARTING, "restart requested", now=now)
        slot.pending_spawn = True
        if slot.old is None and not self._name_busy(sink):
            self._spawn_worker(slot, now)
        return {"restarted": sink}

    def reload(self) -> dict:
        """Re-read the config file and apply the difference; a bad file changes nothing."""
        result = config_mod.load(self.config_path)
        if result.problems or result.config is None:
            lines = [p.render(self.config_path) for p in result.problems]
            raise CommandError(400, f"config not reloaded: {len(lines)} problem(s)", lines)
        plan = plan_reload(self.config, result.config)
        try:
            resolved = config_mod.resolve_secrets(plan.config)
            for name in plan.added:
                self.journal.ensure_cursor(name)
        except ConfigError as exc:
            raise CommandError(400, f"config not reloaded: {len(exc.problems)} problem(s)", [p.render(self.config_path) for p in exc.problems]) from None
        except sqlite3.Error as exc:
            raise CommandError(500, f"config not reloaded: the journal refused a new cursor: {exc}") from None
        for name, slot in self.slots.items():
            # Same settings, but a secret file was rotated or a certificate file renewed behind
            # the same path (password_file, bearer_token_file, client_cert/key, ca_file): an update.
            if name in plan.removed or name in plan.changed or slot.credentials_digest is None:
                continue
            if credentials_digest(resolved.sink_named(name)) != slot.credentials_digest:
                plan.changed.append(name)
                slot.worker_view = (None, None, None)  # resent on its next report if it is still connecting
                if name in plan.quiet_updates:
                    plan.quiet_updates.remove(name)
        for w in result.warnings:
            log.warning("reload: %s", w.render(self.config_path))
        for key in plan.needs_restart:
            log.warning("reload: %s changed; it applies only after the agent is restarted (keeping the running value)", key)
        self.config = plan.config
        logs.add_secrets(logs.config_secrets(plan.config))
        now = self.clock.monotonic()
        for name in plan.removed:
            slot = self.slots.pop(name)
            slot.removed = True
            slot.pending_spawn = False
            slot.restart_at = None
            self.alarms.clear_sink(name)
            self._retire(slot, stop_event=True, now=now)
            if slot.old is not None:
                self.removed.append(slot)
        for name in plan.added:
            slot = SinkSlot(plan.config.sink_named(name))
            self.slots[name] = slot
            slot.pending_spawn = True
            if not self._name_busy(name):
                self._spawn_worker(slot, now)
        for name in plan.changed:
            slot = self.slots[name]
            slot.config = plan.config.sink_named(name)
            self._send_update(slot, announce=True)
        for name in plan.quiet_updates:
            self._send_update(self.slots[name], announce=False)
        self._drop_stale_cursors()
        log.info("config reloaded: added %s, changed %s, removed %s", plan.added or "-", plan.changed or "-", plan.removed or "-")
        return plan.reply()

    # ================================================================ metrics

    def metrics_view(self):
        """A consistent copy of what /metrics shows (called from the metrics server's thread)."""
        from agent.metrics import MetricsView, SinkView

        with self._lock:
            sinks = [
                SinkView(
                    name=slot.name, counters=slot.totals(), backlog=slot.backlog, in_flight=slot.in_flight,
                    retry_backoff=slot.current_backoff, running=slot.publisher_running, restarts=slot.restarts,
                )
                for slot in self.slots.values()
            ]
            return MetricsView(
                sinks=sinks,
                alarms=[(a.name, a.sink) for a in self.alarms.active()],
                received=self.broker.received,
                rejected=self.broker.rejected,
                journal_bytes=self.broker.journal_bytes,
            )

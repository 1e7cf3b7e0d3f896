"""The supervisor process (gunicorn arbiter style): it starts the broker and one
worker per sink (agent/supervision/fleet.py, agent/supervision/child.py), and then, until a graceful
stop has finished, sleeps in its loop (common/loop.py) until something
happens and acts on it: a child's report (agent/supervision/worker_reports.py), a command
(agent/server/actions/), a child's exit, a signal or a deadline.

Everything that wakes it is a handler of that one loop: the supervisor link's
ROUTER, each live child's exit fd (a pidfd), each deadline as a timer its
owner sets (a restart after its backoff, a SIGKILL, a stop_publisher to
resend, a worker's answer to `attempts`: agent/supervision/deadline.py), the control
server's threads handing a command over with `add_callback`, and signals
(SIGTERM/SIGINT queue `shutdown`, SIGHUP queues `reload`) as loop callbacks.
The loop's thread alone changes state. There is no tick: children report on
change plus a slow heartbeat (common/internal.py). Every duration comes from
the injected clock, which is also the loop's.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import zmq

from agent.client.errors import CommandError
from agent.server.actions.registry import RELOAD, SHUTDOWN, action_named
from agent.server.listeners import start_control, start_metrics
from agent.supervision import console_child
from agent.supervision.child import Child, SinkChild
from agent.supervision.fleet import BROKER_JOURNAL_CORRUPT, Fleet
from agent.supervision.processes import PopenLauncher, SystemClock
from agent.supervision.runtime import RuntimeFiles, StartupError, open_journal
from agent.supervision.worker_reports import WorkerReports
from alarms.registry import AlarmRegistry
from common import config as config_mod
from common.config_types import Config, Paths
from common.logs import SUPPORT
from common.loop import Loop

log = logging.getLogger("agent.supervisor")
support = logging.getLogger(SUPPORT)

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Supervisor:
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
        self.clock = clock or SystemClock()
        self.journal_factory = journal_factory or open_journal
        self.serve = serve  # False in unit tests: no control socket, no metrics listener
        self.alarms = AlarmRegistry()
        self.files = RuntimeFiles(self.paths)
        self.loop = Loop(clock=self.clock.monotonic, on_error=self._bug)
        self.fleet = Fleet(launcher or PopenLauncher(), self._spec_for, self.loop, self._settle)
        self.reports = WorkerReports(self.fleet, self.alarms, self.clock, lambda: self.config)
        self.link = None
        self._ctx: zmq.Context | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()  # (Action, params, Future or None)
        self._lock = threading.RLock()  # held by the loop while it works; by metrics while it reads
        self._intake = threading.Lock()  # no command is handed to the loop once close() has begun
        self._accepting = True
        self._control = self._metrics_server = None
        self._owns_sockets = False
        self.exit_code = 0  # of run() after a graceful stop; 3 when the broker found the journal corrupt

    @property
    def stopping(self) -> bool:
        return self.fleet.stopping is not None

    @property
    def done(self) -> bool:
        """A graceful stop has finished."""
        return self.fleet.stopping is not None and self.fleet.stopping.done

    def run(self) -> int:
        """Start everything, run until a graceful stop, return the exit code."""
        # Handlers first: a SIGTERM/SIGHUP during start() (default action: die, leaving the
        # children running) waits as a loop callback until start() is done.
        self.install_signals()
        try:
            self.start()
        except BaseException as exc:
            self.close()  # never leave children behind (and the signals as they were)
            if not isinstance(exc, StartupError):
                raise
            log.error("not starting: %s", exc)
            return 1
        try:
            self.loop.add_callback(self._settle)  # the first turn: a child that died during start()
            self.loop.run()
        finally:
            self.close()
        log.info("agent stopped")
        return self.exit_code

    def install_signals(self) -> None:
        """SIGTERM/SIGINT queue `shutdown`, SIGHUP `reload` (as loop callbacks; main thread only)."""
        for signum in HANDLED_SIGNALS:
            self.loop.add_signal_handler(signum, self.on_signal)

    def on_signal(self, signum: int) -> None:
        """On the loop: a signal's command joins the queue, in order with the control server's."""
        action = RELOAD if signum == signal.SIGHUP else SHUTDOWN
        self._queue.put((action, {"why": signal.Signals(signum).name}, None))
        self._on_queued()

    def request(self, command: str, **params: Any) -> Future:
        """Thread-safe: queue COMMAND for the main loop; the future gets its result or CommandError."""
        future: Future = Future()
        found = action_named(command)
        if found is None or found.execute is None:
            future.set_exception(CommandError(400, f"unknown command {command[:40]!r}"))
            return future
        with self._intake:
            if not self._accepting:
                future.set_exception(CommandError(503, "the agent is not running"))
            else:
                self._queue.put((found, params, future))
                self.loop.add_callback(self._on_queued)
        return future

    def wake(self) -> None:
        """Thread-safe: a turn of the loop's work soon (a follower of the deliveries ended)."""
        self.loop.add_callback(self._settle)

    def begin_stop(self, why: str) -> None:
        self.fleet.begin_stop(why, self.clock.monotonic())

    # ================================================================ start and stop

    def start(self) -> None:
        """Dirs, locks, journal cursors, the ROUTER, the servers, then the broker and the workers."""
        self.files.prepare()
        try:
            self.fleet.journal = self.journal_factory(self.paths.journal_path)
            here = [s.name for s in self.config.sinks_here()]
            for name in here:
                self.fleet.journal.ensure_cursor(name)
            self.fleet.journal.drop_cursors_except(here)
        except Exception as exc:  # OSError, sqlite3.Error, JournalCorrupt: one line, exit 1
            raise StartupError(f"cannot open the journal {self.paths.journal_path}: {exc}") from None
        self._ctx = zmq.Context()
        try:
            self.link = self.fleet.link = self._make_link()
        except zmq.ZMQError as exc:
            raise StartupError(f"cannot bind {self.paths.supervisor_endpoint}: {exc}") from None
        self._owns_sockets = True  # locks held and our ROUTER bound: the ipc files are ours to remove
        self.loop.add_handler(self.link.socket, self._on_link)
        if self.serve:
            self._control = start_control(self.paths.control_socket, self)
            if self.config.agent.metrics_listen:
                self._metrics_server = start_metrics(self.config.agent.metrics_listen, self.collector())
        now = self.clock.monotonic()
        self.fleet.spawn(self.fleet.broker, now)
        for sink in self.config.sinks_here():
            self.fleet.add(sink, now)
        self.fleet.set_console(console_child.wanted(self.config), now)
        self.fleet.watch_exits()
        self.reports.refresh_dead_letters()  # held across restarts of the agent
        log.info(
            "agent started: %d sink(s) at location %s, %d configured elsewhere; broker pid %s; control socket %s; "
            "metrics %s; console %s",
            len(self.fleet.sinks),
            self.config.node.location,
            len(self.config.sink) - len(self.fleet.sinks),
            self.fleet.broker.pid,
            self.paths.control_socket,
            self.config.agent.metrics_listen or "off",
            self.config.console.listen or "off",
        )

    def _make_link(self):
        from agent.supervision.childlink import ChildLink

        return ChildLink(self._ctx, self.paths.supervisor_endpoint)

    def _spec_for(self, child: Child) -> bytes:
        if isinstance(child, SinkChild):
            return self.reports.worker_spec(child)
        if isinstance(child, console_child.ConsoleChild):
            return console_child.console_spec(self.config)
        return config_mod.encode_spec(config_mod.resolve_secrets(self.config))

    def close(self) -> None:
        """Release everything (safe after a partial start): children, servers, sockets, signals, locks."""
        with self._intake:
            self._accepting = False
        self._fail_queued()
        for handle in self.fleet.handles():
            if handle.poll() is None:
                log.warning("%s (pid %d) still running at exit: SIGKILL", handle.name, handle.pid)
                handle.kill()
        served_control = self._control is not None
        for server in (self._control, self._metrics_server):
            if server is not None:
                server.stop()
        self._control = self._metrics_server = None
        self.fleet.unwatch_all()
        if self.link is not None:
            self.loop.remove_handler(self.link.socket)
            self.link.close()
        if self._ctx is not None:
            self._ctx.term()
        if self.fleet.journal is not None:
            self.fleet.journal.close()
        self.link = self.fleet.link = self._ctx = self.fleet.journal = None
        self.loop.close()
        if self._owns_sockets:
            self.files.remove_sockets(control=served_control)
            self._owns_sockets = False
        self.files.release()

    def _take_queued(self) -> Iterator[tuple]:
        """Each queued (command, params, future), taken off the queue in order, until it is empty."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            yield item

    def _fail_queued(self) -> None:
        for _, _, future in self._take_queued():
            if future is not None and future.set_running_or_notify_cancel():
                future.set_exception(CommandError(503, "the agent is stopping"))

    # ================================================================ the main loop

    def step(self, block: bool = True) -> bool:
        """One turn of the loop (tests drive it so); True once a graceful stop has finished."""
        self.loop.run_once(None if block else 0.0)
        return self.done

    def time_to_next_deadline(self) -> float | None:
        """Seconds the loop may sleep before a timer is due; None: until something wakes it."""
        due = self.loop.next_timer()
        return None if due is None else max(0.0, due - self.clock.monotonic())

    def _on_link(self, events: int = 0) -> None:
        """The ROUTER is readable: every report and answer waiting, then the work they call for."""
        with self._lock:
            for identity, msg in self.link.receive():
                self._guard(self.reports.on_message, identity, msg)
            self._settle()

    def _on_queued(self) -> None:
        with self._lock:
            self._run_queued()
            self._settle()

    def _settle(self) -> None:
        """After anything woke the loop: reap exits, act on what is due, watch the new children."""
        with self._lock:
            self._guard(self._reap)
            self._guard(self.fleet.tick, self.clock.monotonic())
            self._guard(self.reports.on_deadlines)
            self._guard(self.fleet.watch_exits)
            if self.done:
                self.loop.stop()

    def _bug(self, exc: BaseException) -> None:
        log.error("BUG in the supervisor loop; carrying on", exc_info=exc)

    def _guard(self, fn: Callable, *args) -> None:
        try:
            fn(*args)
        except Exception:  # a bug must not take the supervisor (and every sink) down
            log.exception("BUG in the supervisor loop (%s); carrying on", getattr(fn, "__name__", fn))

    def _reap(self) -> None:
        if self.fleet.reap(self.clock.monotonic()):
            # Restarting it would only fail again (a crash loop): stop the agent instead; its
            # next start (systemd: Restart=on-failure) moves the journal aside and begins anew.
            support.error(
                "the broker found the journal corrupt: stopping the agent (exit code %d); "
                "its next start moves the file aside and starts a new journal",
                BROKER_JOURNAL_CORRUPT,
            )
            self.exit_code = BROKER_JOURNAL_CORRUPT
            self.begin_stop("the journal is corrupt")

    def _run_queued(self) -> None:
        """Carry out every queued command (its Action, agent/server/actions/), in order."""
        for action, params, future in self._take_queued():
            if future is not None and not future.set_running_or_notify_cancel():
                continue  # the asker gave up
            action.carry_out(self, params, future)

    # ================================================================ metrics

    def collector(self):
        """A prometheus_client collector of every docs/metrics.md metric, built from the current state."""
        from agent.supervision.metrics import AgentCollector

        return AgentCollector(self.metrics_view)

    def metrics_view(self):
        """A consistent copy of what /metrics shows (called from the metrics server's thread)."""
        from agent.supervision.metrics import MetricsView, SinkView

        with self._lock:
            sinks = [
                SinkView(
                    name=c.name,
                    counters=c.totals(),
                    backlog=c.backlog,
                    in_flight=c.in_flight,
                    retry_backoff=c.current_backoff,
                    running=c.publisher_running,
                    restarts=c.restarts,
                    dead_letters=c.dead_letters,
                )
                for c in self.fleet.sinks.values()
            ]
            b = self.fleet.broker
            return MetricsView(
                sinks=sinks,
                alarms=[(a.name, a.sink) for a in self.alarms.active()],
                received=b.received,
                rejected=b.rejected,
                duplicates=b.duplicates,
                journal_bytes=b.journal_bytes,
                journal_retained=b.retained,
            )

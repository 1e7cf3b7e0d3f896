"""The supervisor process's main loop (gunicorn arbiter style): it starts the
broker and one worker per sink (agent/fleet.py, agent/child.py), and then,
until a graceful stop has finished, sleeps until something happens and acts
on it: a child's report (agent/publishers.py), a command (agent/actions/),
a child's exit, or a deadline.

Signal handlers and the control server only put a command on the queue and
wake the loop (a self-pipe polled together with the supervisor link's
ROUTER); the loop alone changes state. SIGTERM/SIGINT queue `shutdown`,
SIGHUP queues `reload`. There is no tick: children report on change plus a
slow heartbeat (common/internal.py), child exits wake the loop through their
pidfd (agent/processes.py), and the poll timeout is the soonest real deadline
(a restart after its backoff, a SIGKILL, a stop_publisher to resend, a
worker's answer to `attempts`). Every duration comes from the injected clock.
"""

from __future__ import annotations

import logging
import math
import queue
import signal
import threading
from concurrent.futures import Future
from typing import Any, Callable, Iterator

import zmq

from common import config as config_mod
from common.config import Config, Paths
from common.logs import SUPPORT
from agent import console_child
from agent.child import Child, SinkChild
from agent.actions import RELOAD, SHUTDOWN, action_named
from agent.errors import CommandError
from agent.fleet import BROKER_JOURNAL_CORRUPT, Fleet
from agent.processes import PopenLauncher, SystemClock
from agent.publishers import Publishers
from agent.runtime import RuntimeFiles, StartupError, open_journal
from agent.servers import start_control, start_metrics
from agent.wakeup import Wakeup
from alarms.registry import AlarmRegistry

log = logging.getLogger("agent.supervisor")
support = logging.getLogger(SUPPORT)

CHILD_POLL_INTERVAL = 0.1  # s between two looks at a child whose exit cannot be watched (no pidfd)


class Supervisor:
    def __init__(self, config_path: str, config: Config, *, launcher=None, clock=None,
                 journal_factory: Callable[[str], Any] | None = None, serve: bool = True):
        self.config_path = config_path
        self.config = config
        self.paths = Paths.of(config)
        self.clock = clock or SystemClock()
        self.journal_factory = journal_factory or open_journal
        self.serve = serve  # False in unit tests: no control socket, no metrics listener
        self.alarms = AlarmRegistry()
        self.files = RuntimeFiles(self.paths)
        self.fleet = Fleet(launcher or PopenLauncher(), self._spec_for)
        self.publishers = Publishers(self.fleet, self.alarms, self.clock, lambda: self.config)
        self.link = None
        self._ctx: zmq.Context | None = None
        self._poller: zmq.Poller | None = None
        self._watched_fds: set[int] = set()  # child exit fds registered in the poller
        self._queue: queue.SimpleQueue = queue.SimpleQueue()  # (Action, params, Future or None)
        self._lock = threading.RLock()  # held by the loop while it works; by metrics while it reads
        self.wakeup = Wakeup(self._enqueue_signal)
        self._accepting = True
        self._control = self._metrics_server = None
        self._owns_sockets = False
        self.exit_code = 0  # of run() after a graceful stop; 3 when the broker found the journal corrupt

    @property
    def stopping(self) -> bool:
        return self.fleet.stopping is not None

    def run(self) -> int:
        """Start everything, run until a graceful stop, return the exit code."""
        # Handlers first: a SIGTERM/SIGHUP during start() (default action: die, leaving the
        # children running) is queued and handled by the loop once start() is done.
        self.wakeup.install_signals()
        try:
            self.start()
        except BaseException as exc:
            self.wakeup.restore_signals()
            self.close()  # never leave children behind
            if not isinstance(exc, StartupError):
                raise
            log.error("not starting: %s", exc)
            return 1
        self.wakeup.arm()
        try:
            # The first turn does not block: a signal or a child exit during start() came
            # before the self-pipe was armed for signals.
            done = self.step(block=False)
            while not done:
                done = self.step()
        finally:
            self.wakeup.restore_signals()
            self.close()
        log.info("agent stopped")
        return self.exit_code

    def request(self, command: str, **params: Any) -> Future:
        """Thread-safe: queue COMMAND for the main loop; the future gets its result or CommandError."""
        future: Future = Future()
        found = action_named(command)
        if found is None or found.execute is None:
            future.set_exception(CommandError(400, f"unknown command {command[:40]!r}"))
        elif not self._accepting:
            future.set_exception(CommandError(503, "the agent is not running"))
        else:
            self._queue.put((found, params, future))
            self.wakeup.wake()
        return future

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
        self.wakeup.open()
        self._ctx = zmq.Context()
        try:
            self.link = self.fleet.link = self._make_link()
        except zmq.ZMQError as exc:
            raise StartupError(f"cannot bind {self.paths.supervisor_endpoint}: {exc}") from None
        self._owns_sockets = True  # locks held and our ROUTER bound: the ipc files are ours to remove
        self._poller = zmq.Poller()
        self._poller.register(self.link.socket, zmq.POLLIN)
        self._poller.register(self.wakeup.read_fd, zmq.POLLIN)
        if self.serve:
            self._control = start_control(self.paths.control_socket, self)
            if self.config.agent.metrics_listen:
                self._metrics_server = start_metrics(self.config.agent.metrics_listen, self.collector())
        now = self.clock.monotonic()
        self.fleet.spawn(self.fleet.broker, now)
        for sink in self.config.sinks_here():
            self.fleet.add(sink, now)
        self.fleet.set_console(console_child.wanted(self.config), now)
        self.publishers.refresh_dead_letters()  # held across restarts of the agent
        log.info(
            "agent started: %d sink(s) at location %s, %d configured elsewhere; broker pid %s; control socket %s; "
            "metrics %s; console %s",
            len(self.fleet.sinks), self.config.node.location, len(self.config.sink) - len(self.fleet.sinks),
            self.fleet.broker.pid, self.paths.control_socket, self.config.agent.metrics_listen or "off",
            self.config.console.listen or "off",
        )

    def _make_link(self):
        from agent.childlink import ChildLink

        return ChildLink(self._ctx, self.paths.supervisor_endpoint)

    def _spec_for(self, child: Child) -> bytes:
        if isinstance(child, SinkChild):
            return self.publishers.worker_spec(child)
        if isinstance(child, console_child.ConsoleChild):
            return console_child.console_spec(self.config)
        return config_mod.encode_spec(config_mod.resolve_secrets(self.config))

    def close(self) -> None:
        """Release everything (safe after a partial start): children, servers, sockets, locks."""
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
        if self.link is not None:
            self.link.close()
        if self._ctx is not None:
            self._ctx.term()
        if self.fleet.journal is not None:
            self.fleet.journal.close()
        self.link = self.fleet.link = self._ctx = self.fleet.journal = None
        self.wakeup.close()
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

    def _enqueue_signal(self, signum: int) -> None:
        # Called in the signal handler: only enqueue, the main loop acts.
        action = RELOAD if signum == signal.SIGHUP else SHUTDOWN
        self._queue.put((action, {"why": signal.Signals(signum).name}, None))

    # ================================================================ the main loop

    def step(self, block: bool = True) -> bool:
        """One turn of the main loop; True once a graceful stop has finished."""
        self._watch_child_exits()
        timeout = self._poll_timeout() if block else 0.0
        # Rounded up: a deadline 0.4 ms away must not turn into a busy loop of zero-timeout polls.
        self._poller.poll(None if timeout is None else math.ceil(timeout * 1000))
        with self._lock:
            self.wakeup.drain()
            for identity, msg in self.link.receive():
                self._guard(self.publishers.on_message, identity, msg)
            self._run_queued()
            self._guard(self._reap)
            self._guard(self.fleet.tick, self.clock.monotonic())
            self._guard(self.publishers.on_deadlines)
            return self.fleet.stopping is not None and self.fleet.stopping.done

    def _poll_timeout(self) -> float | None:
        """Seconds until the soonest deadline; None (sleep until woken) when there is none."""
        now = self.clock.monotonic()
        deadlines = [d for d in self.fleet.deadlines() if d is not None]
        deadlines += self.publishers.deadlines()  # stop_publisher resends, workers' answers due
        if any(fd is None for fd in self._child_exit_fds()):
            deadlines.append(now + CHILD_POLL_INTERVAL)
        return max(0.0, min(deadlines) - now) if deadlines else None

    def _child_exit_fds(self) -> list[int | None]:
        return [getattr(handle, "exit_fd", lambda: None)() for handle in self.fleet.handles() if handle.poll() is None]

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

    def _reap(self) -> None:
        if self.fleet.reap(self.clock.monotonic()):
            # Restarting it would only fail again (a crash loop): stop the agent instead; its
            # next start (systemd: Restart=on-failure) moves the journal aside and begins anew.
            support.error("the broker found the journal corrupt: stopping the agent (exit code %d); "
                          "its next start moves the file aside and starts a new journal", BROKER_JOURNAL_CORRUPT)
            self.exit_code = BROKER_JOURNAL_CORRUPT
            self.begin_stop("the journal is corrupt")

    def _run_queued(self) -> None:
        """Carry out every queued command (its Action, agent/actions/), in order."""
        for action, params, future in self._take_queued():
            if future is not None and not future.set_running_or_notify_cancel():
                continue  # the asker gave up
            action.carry_out(self, params, future)

    # ================================================================ metrics

    def collector(self):
        """A prometheus_client collector of every docs/metrics.md metric, built from the current state."""
        from agent.metrics import AgentCollector

        return AgentCollector(self.metrics_view)

    def metrics_view(self):
        """A consistent copy of what /metrics shows (called from the metrics server's thread)."""
        from agent.metrics import MetricsView, SinkView

        with self._lock:
            sinks = [
                SinkView(name=c.name, counters=c.totals(), backlog=c.backlog, in_flight=c.in_flight,
                         retry_backoff=c.current_backoff, running=c.publisher_running, restarts=c.restarts,
                         dead_letters=c.dead_letters)
                for c in self.fleet.sinks.values()
            ]
            b = self.fleet.broker
            return MetricsView(sinks=sinks, alarms=[(a.name, a.sink) for a in self.alarms.active()],
                               received=b.received, rejected=b.rejected, duplicates=b.duplicates,
                               journal_bytes=b.journal_bytes, journal_retained=b.retained)

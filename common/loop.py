"""The one event loop of the agent's processes (supervisor, broker, sink worker).

Owns, for one process: a poller over ZeroMQ sockets and plain file descriptors
with one handler each, a heap of timers (`call_at`, `call_later`, `Timer.cancel`),
a queue of callbacks that any thread may add to (`add_callback`), the one wake-up
pipe that interrupts the poll, and signals turned into loop callbacks (the
handler only enqueues; the loop acts, as gunicorn's arbiter does).

In the style of tornado's IOLoop: each component registers its own handlers and
deadlines, so a new timer is one `call_later` and no edit elsewhere. Nothing
here ticks: with no timer due and nothing ready the loop sleeps in one poll.

Cost matters (docs/delivery.md, "What it costs"): a turn is one poll, a dict
lookup per ready item, heap comparisons on tuples (compared in C), and no
allocation when nothing is due.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

POLLIN = zmq.POLLIN
POLLOUT = zmq.POLLOUT
POLLERR = zmq.POLLERR


class Timer:
    """One pending call; `cancel()` makes it never run (it leaves the heap lazily)."""

    __slots__ = ("when", "callback", "args")

    def __init__(self, when: float, callback: Callable, args: tuple):
        self.when = when
        self.callback: Callable | None = callback
        self.args = args

    def cancel(self) -> None:
        self.callback = None
        self.args = ()

    @property
    def pending(self) -> bool:
        return self.callback is not None


class Loop:
    """Handlers on sockets and fds, timers, callbacks and signals, run by `run()` or `run_once()`.

    `clock` is the seam for tests (default `time.monotonic`); `on_error`, when set, receives
    an exception a callback raised (and the loop goes on); otherwise the exception propagates.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, on_error: Callable[[BaseException], None] | None = None
    ):
        self.time = clock
        self.on_error = on_error
        self._poller = zmq.Poller()
        self._handlers: dict[Any, Callable[[int], None]] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()  # ties in `when` run in the order they were added
        self._callbacks: deque[tuple[Callable, tuple]] = deque()  # append/popleft are thread-safe
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poller.register(self._wake_r, POLLIN)
        self._signals: dict[int, Any] = {}  # signal -> the handler it had before
        self._old_wakeup_fd: int | None = None
        self._stopping = False
        self.closed = False

    # -- handlers ----------------------------------------------------------------------------

    def add_handler(self, fd_or_socket: Any, handler: Callable[[int], None], events: int = POLLIN) -> None:
        """Call `handler(events)` whenever FD_OR_SOCKET (an fd or a zmq socket) is ready."""
        self._handlers[fd_or_socket] = handler
        self._poller.register(fd_or_socket, events)

    def update_handler(self, fd_or_socket: Any, events: int) -> None:
        """Wait for other EVENTS on a registered fd or socket (0: none, the handler stays)."""
        self._poller.register(fd_or_socket, events)

    def remove_handler(self, fd_or_socket: Any) -> None:
        if self._handlers.pop(fd_or_socket, None) is not None:
            self._poller.unregister(fd_or_socket)

    # -- timers and callbacks ----------------------------------------------------------------

    def call_at(self, when: float, callback: Callable, *args: Any) -> Timer:
        """Run `callback(*args)` once `time()` reaches WHEN (a monotonic time)."""
        timer = Timer(when, callback, args)
        heapq.heappush(self._timers, (when, next(self._order), timer))
        return timer

    def call_later(self, delay: float, callback: Callable, *args: Any) -> Timer:
        return self.call_at(self.time() + delay, callback, *args)

    def add_callback(self, callback: Callable, *args: Any) -> None:
        """Run `callback(*args)` on the loop's next turn; safe from any thread and from a signal handler."""
        self._callbacks.append((callback, args))
        self.wake()

    def next_timer(self) -> float | None:
        """When the soonest pending timer is due (None: no timer)."""
        timers = self._timers
        while timers and timers[0][2].callback is None:
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    # -- signals -----------------------------------------------------------------------------

    def add_signal_handler(self, signum: int, callback: Callable[[int], None]) -> None:
        """Run `callback(signum)` on the loop when SIGNUM arrives (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._signals.setdefault(signum, signal.getsignal(signum))
        signal.signal(signum, lambda sig, frame: self._callbacks.append((callback, (sig,))))
        if self._old_wakeup_fd is None:
            # The C-level handler writes to the pipe, so the poll returns even before Python runs ours.
            self._old_wakeup_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def restore_signals(self) -> None:
        for signum, handler in self._signals.items():
            signal.signal(signum, handler)
        self._signals.clear()
        if self._old_wakeup_fd is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            self._old_wakeup_fd = None

    # -- running -----------------------------------------------------------------------------

    def wake(self) -> None:
        """Interrupt the poll (from another thread; harmless from the loop's own)."""
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass  # the pipe is full (the loop is awake anyway) or closed

    def stop(self) -> None:
        """End `run()` after the current turn."""
        self._stopping = True
        self.wake()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def run(self) -> None:
        self._stopping = False
        while not self._stopping:
            self.run_once()

    def run_once(self, max_wait: float | None = None) -> None:
        """One turn: wait (at most MAX_WAIT s) for a ready fd, a due timer or a callback, then run them."""
        if self._callbacks:
            timeout: float | None = 0.0
        else:
            due = self.next_timer()
            timeout = None if due is None else max(0.0, due - self.time())
            if max_wait is not None and (timeout is None or timeout > max_wait):
                timeout = max_wait
        # Rounded up to whole ms: zmq truncates, and a deadline 0.4 ms away must not spin.
        ready = self._poller.poll(None if timeout is None else math.ceil(timeout * 1000))
        handlers = self._handlers
        for item, events in ready:
            handler = handlers.get(item)
            if handler is not None:
                self._run(handler, events)
            elif item == self._wake_r:
                self._drain_wake()
        timers = self._timers
        if timers:
            now = self.time()
            while timers and timers[0][0] <= now:
                timer = heapq.heappop(timers)[2]
                callback = timer.callback
                if callback is not None:
                    timer.callback = None
                    self._run(callback, *timer.args)
        for _ in range(len(self._callbacks)):  # those added while running wait for the next turn
            callback, args = self._callbacks.popleft()
            self._run(callback, *args)

    def _run(self, callback: Callable, *args: Any) -> None:
        if self.on_error is None:
            callback(*args)
            return
        try:
            callback(*args)
        except Exception as exc:  # the owner decides (log, stop); one bad callback does not end the loop
            self.on_error(exc)

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except OSError:
            pass  # empty (BlockingIOError) or closed

    def close(self) -> None:
        """Restore the signals and close the wake-up pipe; the sockets belong to their owners."""
        if self.closed:
            return
        self.restore_signals()
        for fd_or_socket in list(self._handlers):
            self.remove_handler(fd_or_socket)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self.closed = True

"""How the supervisor's main loop is woken: the self-pipe (written by the
control server's threads and, through `signal.set_wakeup_fd`, by signals),
and the signal handlers, which only pass the signal on to be enqueued
(SimpleQueue.put is safe in a signal handler); the loop alone acts."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Callable

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Wakeup:
    """The self-pipe and the signal handlers of one supervisor."""

    def __init__(self, on_signal: Callable[[int], None]):
        self._on_signal = on_signal  # enqueues; called in the signal handler
        self.read_fd = self._write_fd = -1
        self._old_signals: dict[int, Any] = {}
        self._old_wakeup_fd: int | None = None

    def open(self) -> None:
        self.read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def close(self) -> None:
        for fd in (self.read_fd, self._write_fd):
            if fd >= 0:
                os.close(fd)
        self.read_fd = self._write_fd = -1

    def install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in HANDLED_SIGNALS:
            self._old_signals[sig] = signal.signal(sig, self.handle_signal)
        self.arm()

    def arm(self) -> None:
        """Let signals wake the loop through the self-pipe (once it exists)."""
        if self._write_fd < 0 or self._old_wakeup_fd is not None or threading.current_thread() is not threading.main_thread():
            return
        self._old_wakeup_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)

    def restore_signals(self) -> None:
        for sig, handler in self._old_signals.items():
            signal.signal(sig, handler)
        self._old_signals.clear()
        if self._old_wakeup_fd is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            self._old_wakeup_fd = None

    def handle_signal(self, signum: int, frame) -> None:
        self._on_signal(signum)

    def wake(self) -> None:
        if self._write_fd >= 0:
            try:
                os.write(self._write_fd, b"\0")
            except (BlockingIOError, OSError):
                pass  # already awake, or closing

    def drain(self) -> None:
        while True:
            try:
                if not os.read(self.read_fd, 512):
                    return
            except (BlockingIOError, OSError):
                return

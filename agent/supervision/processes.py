"""The supervisor's seams to the operating system: starting child processes and
reading the time.

`Launcher.spawn(argv, stdin_bytes, name) -> ChildHandle` starts a child with
fork+exec, hands it its spec on stdin (never argv: no secrets in `ps`) and
closes stdin. A handle's `exit_fd()` is a file descriptor that becomes
readable when the child exits (a Linux pidfd), a handler of the supervisor's
loop, so the supervisor sleeps until something happens instead of looking at
its children on a tick; None when there is none (the supervisor then looks at
that child on a short interval). `release()` closes it, once the loop no
longer polls it. `Clock` gives `monotonic()` for every duration and `wall()` for
timestamps shown to operators. Unit tests replace both with fakes.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from typing import Protocol

log = logging.getLogger("agent.processes")


class ChildHandle(Protocol):
    pid: int
    name: str

    def poll(self) -> int | None: ...

    def exit_fd(self) -> int | None: ...

    def release(self) -> None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


class Launcher(Protocol):
    def spawn(self, argv: list[str], stdin_bytes: bytes, name: str) -> ChildHandle: ...


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    """The real clock: time.monotonic() for durations, time.time() for timestamps."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class PopenChild:
    """A running child process started by `PopenLauncher`."""

    def __init__(self, proc: subprocess.Popen, name: str):
        self.proc = proc
        self.pid = proc.pid
        self.name = name
        try:
            # Opened before the child can have been reaped (only poll() reaps it), so the pid is ours.
            self._pidfd: int | None = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):  # not Linux >= 5.3: the supervisor polls this child instead
            self._pidfd = None

    def poll(self) -> int | None:
        return self.proc.poll()

    def exit_fd(self) -> int | None:
        """Readable once the child has exited; None once released."""
        return self._pidfd

    def release(self) -> None:
        """Close the exit fd (the supervisor's loop has stopped polling it)."""
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def _signal(self, sig: int) -> None:
        if self.proc.poll() is not None:
            return
        try:
            self.proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def __repr__(self) -> str:
        return f"<{self.name} pid {self.pid}>"


class PopenLauncher:
    """Starts children with subprocess.Popen: stdout/stderr inherited, other fds closed."""

    def spawn(self, argv: list[str], stdin_bytes: bytes, name: str) -> PopenChild:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, close_fds=True)
        try:
            assert proc.stdin is not None
            proc.stdin.write(stdin_bytes)
            proc.stdin.close()
        except BrokenPipeError:
            # The child died before reading its spec; poll() reports the exit soon.
            log.warning("%s (pid %d) exited before reading its spec", name, proc.pid)
            try:
                proc.stdin.close()
            except OSError:
                pass
        return PopenChild(proc, name)


def exit_description(code: int) -> str:
    """'exit code 3' / 'killed by SIGKILL' for a Popen returncode."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"

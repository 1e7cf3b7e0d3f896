"""One deadline of a supervisor-side owner (a child's restart or SIGKILL, a stop_publisher
resend, a worker's answer due) kept as one timer of the process's loop (common/loop.py).

The owner sets it where it decides the time and clears it where the time stops mattering;
the loop then wakes for it and for nothing else. Without a scheduler (a unit test of the
state alone) it only remembers the time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# schedule(when) -> a timer with cancel(), or None without a loop: wakes the supervisor at WHEN
Schedule = Callable[[float], Any]


class Deadline:
    """A time (or None) and the one pending timer that stands for it."""

    __slots__ = ("when", "_schedule", "_timer")

    def __init__(self, schedule: Schedule | None = None) -> None:
        self.when: float | None = None
        self._schedule = schedule
        self._timer = None

    def bind(self, schedule: Schedule | None) -> None:
        """Use SCHEDULE from now on (a time already set gets its timer)."""
        self._schedule = schedule
        when, self.when = self.when, None
        self.set(when)

    def set(self, when: float | None) -> None:
        """Move the deadline to WHEN (None: there is none); the previous timer is cancelled."""
        if when == self.when and (self._timer is not None or when is None):
            return  # unchanged: no churn in the loop's heap
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.when = when
        if when is not None and self._schedule is not None:
            self._timer = self._schedule(when)

    def clear(self) -> None:
        self.set(None)

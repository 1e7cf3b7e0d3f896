"""`Deadline`: one re-armable timer of the worker's loop (common/loop.py) for one component.

Owns the pattern every deadline of a sink worker follows: a component says when it
must act next (`at`: the soonest asked wins until the timer runs; `set`: exactly
then, or never), and the loop runs its callback then. Asking again for a later time
while an earlier one is pending costs one comparison, no allocation, so a stage can
ask per batch.
"""

from __future__ import annotations

from collections.abc import Callable

from common.loop import Loop, Timer


class Deadline:
    """CALLBACK() once the loop's clock reaches the time asked for."""

    __slots__ = ("_loop", "_callback", "_timer")

    def __init__(self, loop: Loop, callback: Callable[[], None]):
        self._loop = loop
        self._callback = callback
        self._timer: Timer | None = None

    @property
    def when(self) -> float | None:
        timer = self._timer
        return timer.when if timer is not None and timer.callback is not None else None

    def at(self, when: float) -> None:
        """Run by WHEN at the latest (a pending earlier time stays)."""
        timer = self._timer
        if timer is not None and timer.callback is not None:
            if timer.when <= when:
                return
            timer.cancel()
        self._timer = self._loop.call_at(when, self._callback)

    def set(self, when: float | None) -> None:
        """Run at exactly WHEN (None: not at all)."""
        timer = self._timer
        if timer is not None and timer.callback is not None:
            if timer.when == when:
                return
            timer.cancel()
        self._timer = None if when is None else self._loop.call_at(when, self._callback)

    def cancel(self) -> None:
        self.set(None)

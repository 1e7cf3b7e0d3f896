"""The one end of a sink worker's pipeline: what happens once a Post is done.

Owns `Acknowledger`: every Post comes here exactly once, through the dispatcher's
`on_done(post, result)` (sinks/delivery.py; the attempts and deliveries rings are
filled there as it ends), delivered or set aside as a dead letter, and every offset
the shaper drops or merges through `discarded`. It moves the low-water mark
(sinks/cursor.py), writes it to the cursor shadow at once (sinks/shadow.py), tells
the dead letters a redriven one was delivered, and commits the cursor to SQLite at
most every COMMIT_INTERVAL (a loop timer, armed when the mark moves).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from common.loop import Loop
from sinks.cursor import CursorTracker
from sinks.dead_letters import DeadLetters
from sinks.deadline import Deadline
from sinks.http import Result
from sinks.post import Post
from sinks.shadow import CursorShadow

# s between cursor commits to SQLite (when it moved): every acknowledgement is in the cursor
# shadow at once (sinks/shadow.py), so this only bounds what a power loss may deliver twice.
COMMIT_INTERVAL = 1.0


class Acknowledger:
    """Cursor, shadow and commits of one worker; `done` and `discarded` are its two inputs."""

    def __init__(
        self,
        reader,
        shadow: CursorShadow,
        dead_letters: DeadLetters,
        loop: Loop,
        journal_call: Callable,
        committed_now: Callable[[], None],
    ):
        self.reader = reader
        self.shadow = shadow
        self.dead_letters = dead_letters
        self.committed = reader.cursor()  # what SQLite holds
        # The shadow may know acknowledgements made after the last SQLite commit (a kill -9).
        cursor, acked = shadow.resume(self.committed)
        self.acked_before = set(acked)  # acknowledged above the mark before a crash: not sent again
        self.tracker = CursorTracker(cursor)
        self._shadowed = cursor
        self._journal_call = journal_call  # the worker's: counts and logs a failed journal call
        self._committed_now = committed_now  # the worker's: a report may be due
        self._last_commit = time.monotonic()
        self._commit_due = Deadline(loop, self._commit_now)
        self._commit_armed = False  # _commit_due is pending (a flag: cheaper than asking it per event)

    def done(self, post: Post, result: Result) -> None:
        """POST is delivered (RESULT ok) or set aside as a dead letter: its offsets are done."""
        offsets = post.offsets
        self.shadow.acknowledged(offsets)
        done = self.tracker.done
        for offset in offsets:
            done(offset)
        if result.ok and self.dead_letters.redriving:
            self.dead_letters.delivered(post)
        cursor = self.tracker.cursor  # self._moved(), inlined: once per POST
        if cursor != self._shadowed:
            self._shadowed = cursor
            self.shadow.moved(cursor)
            if not self._commit_armed:
                self._commit_armed = True
                self._commit_due.set(self._last_commit + COMMIT_INTERVAL)

    def discarded(self, offset: int) -> None:
        """Filtered out, merged, or acknowledged before a crash: done without a POST of its own."""
        self.tracker.done(offset)
        self._moved()

    def _moved(self) -> None:
        """Write the low-water mark to the shadow whenever it moved (8 bytes into a shared mapping)."""
        cursor = self.tracker.cursor
        if cursor != self._shadowed:
            self._shadowed = cursor
            self.shadow.moved(cursor)
            if not self._commit_armed:
                self._commit_armed = True
                self._commit_due.set(self._last_commit + COMMIT_INTERVAL)

    def _commit_now(self) -> None:
        now = self._last_commit = time.monotonic()
        self._commit_armed = False
        if self.tracker.cursor > self.committed:
            self.commit()
            if self.tracker.cursor > self.committed:  # the journal refused: again after an interval
                self._commit_armed = True
                self._commit_due.set(now + COMMIT_INTERVAL)
            self._committed_now()

    def commit(self) -> None:
        cursor = self.tracker.cursor
        if self._journal_call(lambda: self.reader.commit_cursor(cursor) or True):
            self.committed = cursor
            self.shadow.committed(cursor)

    def close(self) -> None:
        self._commit_due.cancel()
        self.shadow.close()

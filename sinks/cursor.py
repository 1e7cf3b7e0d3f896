"""A sink's cursor as a low-water mark over journal offsets.

Owns `CursorTracker`, a pure class (no I/O, no clock): the worker registers
every journal offset it takes into memory (`add`, ascending) and marks it done
when it is delivered, filtered out, or merged into a delivered event (`done`).
`cursor` is the highest offset at or below which every offset is done, so a
held or in-flight event is never skipped after a crash. Offsets that were never
added (gaps in the journal) count as done.
"""

from __future__ import annotations

from collections import deque


class CursorTracker:
    """Low-water mark: O(1) amortised per offset, memory bounded by the offsets not yet passed."""

    __slots__ = ("cursor", "_high", "_order", "_pending", "undone", "undone_bytes")

    def __init__(self, cursor: int):
        # Plain attributes, not properties: the worker reads both per event.
        self.cursor = cursor  # every offset <= this is done
        self._high = cursor  # the highest offset added so far
        self._order: deque[int] = deque()  # added offsets above the cursor, ascending
        self._pending: dict[int, int] = {}  # added offsets not yet done -> their size in bytes
        self.undone = 0  # offsets added and not yet done: the events this sink holds in memory
        self.undone_bytes = 0  # the sizes given for the offsets not yet done (what they weigh in memory)

    def add(self, offset: int, size: int = 0) -> None:
        """Take OFFSET (of SIZE bytes) into memory; offsets must be added in ascending order."""
        if offset <= self._high:
            raise ValueError(f"offset {offset} added after {self._high}")
        self._high = offset
        if not self._order:
            # Everything below OFFSET is done: a gap in the journal was never ours.
            self.cursor = offset - 1
        self._order.append(offset)
        self._pending[offset] = size
        self.undone_bytes += size
        self.undone += 1

    def done(self, offset: int) -> None:
        """OFFSET is delivered, filtered out or merged; unknown or repeated offsets are ignored."""
        size = self._pending.pop(offset, None)
        if size is None:
            return
        self.undone_bytes -= size
        self.undone -= 1
        pending = self._pending
        order = self._order
        if offset != order[0]:
            return
        order.popleft()
        while order and order[0] not in pending:
            order.popleft()
        self.cursor = order[0] - 1 if order else self._high

"""The cursor shadow: what a sink has acknowledged, surviving kill -9 of its worker.

Owns `CursorShadow`, a memory-mapped file per sink
(`{state_dir}/cursor-{sink}.shadow`). The worker commits its cursor to SQLite
in batches (a commit per acknowledgement would cost ~160 us each on a quiet
node), so a worker killed between two commits used to redeliver everything
acknowledged since the last one. The shadow is written on every
acknowledgement instead: a store into a shared mapping is in the kernel's page
cache the moment it is made, so it survives the death of the process (not a
power loss: there SQLite's own last commit is what counts, and events may be
delivered twice, as before).

The low-water mark alone is not enough: events acknowledged *above* it (while
an older one is held for its media streams, or still in flight on another
connection) would come again too. So each acknowledged offset is also stored
in a ring of RING slots, slot `offset % RING` holding the offset itself (no
stale slot can be mistaken for another offset). A restarted worker skips the
offsets it finds there, above the mark; what it redelivers is then at most
the events of the POSTs that were in flight when it died.

The file format and the read-only look at a shadow (`peek_mark`: the
supervisor and the broker read marks too) are in bus/shadow_marks.py.
"""

from __future__ import annotations

import mmap
import os
import struct

from bus.shadow_marks import BASE_AT as _BASE_AT
from bus.shadow_marks import FORMAT, MAGIC, RING, SIZE, epoch_field
from bus.shadow_marks import HEADER as _HEADER
from bus.shadow_marks import MARK_AT as _MARK_AT

_U64 = struct.Struct("<Q")


class CursorShadow:
    """One sink's shadow; each acknowledgement costs an 8-byte store per offset."""

    def __init__(self, path: str, epoch: str):
        self.path = path
        self._epoch = epoch_field(epoch)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            if os.fstat(fd).st_size != SIZE:
                os.ftruncate(fd, 0)  # another format: start from nothing
                os.ftruncate(fd, SIZE)
            self._map = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self._slots = memoryview(self._map)[_HEADER.size :].cast("Q")

    def resume(self, committed: int) -> tuple[int, frozenset[int]]:
        """Given the SQLite cursor COMMITTED: the mark to start from and the offsets above it
        already acknowledged. The shadow is re-based on COMMITTED (and cleared if void)."""
        magic, fmt, epoch, base, mark = _HEADER.unpack_from(self._map, 0)
        if magic == MAGIC and fmt == FORMAT and epoch == self._epoch and base == committed:
            start = max(committed, mark)
            done = frozenset(o for o in self._slots if start < o <= start + RING)
        else:
            start, done = committed, frozenset()
            self._map[_HEADER.size :] = bytes(SIZE - _HEADER.size)
        _HEADER.pack_into(self._map, 0, MAGIC, FORMAT, self._epoch, committed, start)
        return start, done

    def acknowledged(self, offsets) -> None:
        """OFFSETS were delivered (a 2xx)."""
        slots = self._slots
        for offset in offsets:
            slots[offset % RING] = offset

    def moved(self, mark: int) -> None:
        """The low-water mark moved to MARK."""
        _U64.pack_into(self._map, _MARK_AT, mark)

    def committed(self, cursor: int) -> None:
        """SQLite now holds CURSOR: the shadow's base follows it."""
        _U64.pack_into(self._map, _BASE_AT, cursor)

    def close(self) -> None:
        if not self._map.closed:
            self._slots.release()
            self._map.close()


def discard(path: str) -> None:
    """Delete the shadow at PATH (its sink's cursor is being moved back while no worker runs)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

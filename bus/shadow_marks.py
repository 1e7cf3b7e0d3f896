"""The cursor shadows' file format, and the read-only look at them.

Each worker keeps `{state_dir}/cursor-{sink}.shadow` (written by
sinks/shadow.py, which describes why it exists): the low-water mark of what the
sink has acknowledged, ahead of the cursor it last committed to SQLite (it
commits about once a second). Whoever needs to know what a sink already has
reads the mark here: the supervisor (where a replay begins) and the broker
(which rows are delivered, so retained: a purge and making room must not wait
for the worker's next commit, or at a small `max_journal_mb` a second of
deliveries looks undelivered and the journal refuses events).

A mark counts only for the journal it was written against (its epoch) and only
while the shadow's `base` is still the sink's SQLite cursor: a cursor moved by
someone else (a replay) voids it.

Layout (little-endian): magic `ESAS`, format (u32), the journal's epoch (16
ASCII chars), `base` (u64), `mark` (u64), then RING u64 slots.
"""

from __future__ import annotations

import os
import struct

MAGIC = b"ESAS"
FORMAT = 2
RING = 16384  # acknowledged offsets remembered above the mark (4 x the worker's in-memory window)
HEADER = struct.Struct("<4sI16sQQ")
BASE_AT = HEADER.size - 16
MARK_AT = HEADER.size - 8
SIZE = HEADER.size + 8 * RING


def shadow_path(state_dir: str, sink: str) -> str:
    """Sink names are [A-Za-z0-9_.-]: always one file name inside STATE_DIR."""
    return os.path.join(state_dir, f"cursor-{sink}.shadow")


def epoch_field(epoch: str) -> bytes:
    """The journal's epoch as the header stores it."""
    return epoch.encode("ascii")[:16].ljust(16, b"0")


def peek_mark(path: str, epoch: str, committed: int) -> int:
    """Read-only: the low-water mark the shadow at PATH vouches for, given the SQLite cursor
    COMMITTED (COMMITTED itself when there is no valid shadow)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEADER.size)
    except OSError:
        return committed
    if len(head) != HEADER.size:
        return committed
    magic, fmt, found_epoch, base, mark = HEADER.unpack(head)
    valid = magic == MAGIC and fmt == FORMAT and found_epoch == epoch_field(epoch)
    return max(committed, mark) if valid and base == committed else committed

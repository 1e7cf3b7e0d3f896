"""Exactly once from numbering publishers (docs/bus.md): which (publisher id, sequence) the
journal already holds, and the journal's `publishers` table that remembers it across restarts.

A numbered message's third frame is NUMBER_BYTES: an 8-byte publisher id and an 8-byte
big-endian sequence number (bus/publisher.py sends them, from 1, one more per event). The
broker keeps the highest sequence journaled per id (`Numbering`); a message at or below it is
a repeat (a resend after a broker restart, or a client sending twice): dropped and counted in
`duplicates`, never rejected. A gap (a sequence more than one above) is accepted: what is
missing never reached the agent and no later message can bring it.

"Highest per id" needs the messages of one id in sequence order: a `Publisher` sends its
resends before anything newer (its socket keeps no queue for a dead connection).

The table, `publishers(id BLOB PRIMARY KEY, seq BLOB, seen_at REAL)` (seq: the 8 bytes as
sent, so any value a hand-made frame carries fits), is written by `record()` inside the
journal's append transaction, so "journaled" and "seen" never disagree after a crash.
Pruning: a publisher unseen for FORGET_AFTER_SECONDS (or for the retention, when longer) is
forgotten, at the broker's start and then at most once per PRUNE_INTERVAL when a new id
appears. A Publisher silent for that long whose broker then restarts would have its ring
journaled again; a week covers any conference process that is alive and publishing.
"""

from __future__ import annotations

import sqlite3
import time

NUMBER_BYTES = 16  # publisher id (8) + sequence (8, big-endian)
ID_BYTES = 8
FORGET_AFTER_SECONDS = 7 * 24 * 3600  # a publisher id unseen this long is forgotten
PRUNE_INTERVAL = 3600.0  # s at least between two prunes while the broker runs

TABLE_SQL = "CREATE TABLE IF NOT EXISTS publishers(id BLOB PRIMARY KEY, seq BLOB NOT NULL, seen_at REAL NOT NULL)"
COLUMNS = ["id", "seq", "seen_at"]
_UPSERT_SQL = (
    "INSERT INTO publishers(id, seq, seen_at) VALUES (?, ?, ?) "
    "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, seen_at = excluded.seen_at"
)


def record(db: sqlite3.Connection, rows: list, at: float) -> None:
    """Inside the caller's transaction: the highest number of each publisher among ROWS (journal
    rows: (topic, payload) or (topic, payload, number-or-None), in sequence order per id)."""
    highest: dict[bytes, bytes] = {}
    for row in rows:
        if len(row) > 2 and row[2] is not None:
            number = row[2]
            highest[number[:ID_BYTES]] = number[ID_BYTES:]
    if highest:
        db.executemany(_UPSERT_SQL, [(pid, seq, at) for pid, seq in highest.items()])


def load(db: sqlite3.Connection) -> dict[bytes, bytes]:
    """Publisher id -> the highest sequence journaled (8 bytes, big-endian: they compare as the numbers do)."""
    return {bytes(pid): bytes(seq) for pid, seq in db.execute("SELECT id, seq FROM publishers")}


def forget(db: sqlite3.Connection, unseen_since: float) -> int:
    """Delete the publishers last seen before UNSEEN_SINCE (Unix seconds); how many."""
    return max(0, db.execute("DELETE FROM publishers WHERE seen_at < ?", (unseen_since,)).rowcount)


class Numbering:
    """The broker's view of the table: `fresh(number)` says whether a numbered message is new."""

    def __init__(self, highest: dict[bytes, bytes], keep_seconds: float = FORGET_AFTER_SECONDS):
        self.highest = highest
        self.keep_seconds = max(keep_seconds, FORGET_AFTER_SECONDS)
        self.duplicates = 0  # repeats dropped by this broker
        self.prune_due = True  # at start; then when a new id appears, PRUNE_INTERVAL after the last
        self._pruned_at = float("-inf")

    def fresh(self, number: bytes) -> bool:
        """True for a message not seen before (its sequence becomes the publisher's highest);
        False for a repeat, counted."""
        pid, seq = number[:ID_BYTES], number[ID_BYTES:]  # equal-length big-endian: bytes order is number order
        last = self.highest.get(pid)
        if last is None:
            if time.monotonic() >= self._pruned_at + PRUNE_INTERVAL:
                self.prune_due = True
        elif seq <= last:
            self.duplicates += 1
            return False
        self.highest[pid] = seq
        return True

    def pruned(self) -> float:
        """Mark a prune as done now; the Unix time before which publishers are forgotten."""
        self.prune_due = False
        self._pruned_at = time.monotonic()
        return time.time() - self.keep_seconds

"""The broker's writer of the journal: appending accepted events (one transaction per batch,
never passing the clock backwards), the numbering publishers' marks, deleting delivered rows
(retention's purge and making room), checkpointing the WAL and measuring the file.

Invariants the counts rely on: offsets are assigned consecutively (AUTOINCREMENT;
a rolled-back batch assigns none) and a purge only ever deletes a prefix, so the
rows held are exactly MIN(offset)..head and a count is a difference of offsets,
never a COUNT(*). `accepted_at` never decreases with the offset (append clamps a
clock stepped back), so "accepted at or after T" is a suffix of the rows, found
with one lookup in its index.

A delivered row is one at or below every sink's delivered mark (bus/journal_handle.py).
Retention keeps delivered rows (`purge(accepted_before=...)`); `make_room` deletes the
oldest delivered rows regardless of age.

The WAL: a reader that is reading whenever a writer commits (a worker catching
up) keeps SQLite from restarting the WAL, so the passive autocheckpoint copies
frames but the file grows by every transaction (three pages or more each, even
for one row), and journal_size_limit only truncates it to that limit on a
restart. A large delete writes about as much WAL as it deletes, a vacuum as much
as it moves, twice or more. So purges go in chunks of a quarter of the WAL limit, each followed by a
TRUNCATE checkpoint (which waits briefly for readers), and stop when one fails;
the broker checkpoints explicitly too once it has written about the limit.
"""

from __future__ import annotations

import os
import sqlite3
import time

from bus import numbering
from bus.envelope_records import EnvelopeDesk
from bus.journal_handle import JournalHandle
from bus.journal_schema import BUSY_TIMEOUT_MS, HEAD_SQL, JournalFull, is_full, wal_bytes

CHECKPOINT_BUSY_TIMEOUT_MS = 50  # a checkpoint never blocks the broker for long

FIRST_YOUNG_SQL = 'SELECT "offset" FROM events WHERE accepted_at >= ? ORDER BY accepted_at, "offset" LIMIT 1'


class JournalWriter(EnvelopeDesk, JournalHandle):
    """The broker's handle: appends, purges, checkpoints, measures."""

    def append(self, rows: list[tuple], accepted_at: float | None = None) -> list[int]:
        """Journal ROWS ((topic, payload) or (topic, payload, number-or-None)) in one transaction,
        accepted at ACCEPTED_AT (default now; never before the previous row's), with the highest
        number of each numbering publisher among them (bus/numbering.py); returns their offsets
        (ascending). Raises JournalFull."""
        if not rows:
            return []
        at = time.time() if accepted_at is None else accepted_at
        with self._lock:
            at = max(at, self._last_at)
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                first = db.execute(HEAD_SQL).fetchone()[0] + 1
                db.executemany(
                    'INSERT INTO events("offset", topic, payload, accepted_at) VALUES (?, ?, ?, ?)',
                    [(first + i, row[0], row[1], at) for i, row in enumerate(rows)],
                )
                numbering.record(db, rows, at)
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                if is_full(exc):
                    raise JournalFull(f"journal {self.path} is full: {exc}") from None
                raise
            self._last_at = at
        return list(range(first, first + len(rows)))

    def probe_write(self) -> bool:
        """True when a tiny write transaction succeeds (the broker's test for leaving journal-full)."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('write_probe', ?)", (repr(time.time()),)
                )
                return True
            except sqlite3.Error:
                return False

    def publisher_marks(self, unseen_since: float | None = None) -> dict[bytes, bytes]:
        """Numbering publisher id -> the highest sequence journaled (8 bytes, big-endian), after forgetting those last
        seen before UNSEEN_SINCE (Unix seconds) when given."""
        with self._lock:
            if unseen_since is not None:
                numbering.forget(self._db, unseen_since)
            return numbering.load(self._db)

    # ------------------------------------------------------------ housekeeping

    def purge(
        self, max_rows: int | None = None, accepted_before: float | None = None, until_bytes: int | None = None
    ) -> int:
        """Delete delivered events, oldest first: at most MAX_ROWS (None = no limit), only those
        accepted before ACCEPTED_BEFORE when given (retention), and when UNTIL_BYTES is given only
        until `used_bytes()` is at most that. In transactions of a quarter of the WAL limit, each
        followed by handing the freed pages back and a checkpoint; stops early when a checkpoint
        cannot empty the WAL (readers), so the WAL never grows past its limit. Returns rows deleted."""
        deleted = 0
        with self._lock:
            while max_rows is None or deleted < max_rows:
                if until_bytes is not None and self.used_bytes() <= until_bytes:
                    break
                limit = self._chunk_rows(until_bytes)
                if max_rows is not None:
                    limit = min(limit, max_rows - deleted)
                n = self._delete_prefix(limit, accepted_before)
                deleted += n
                self._vacuum_step()
                if n == 0 or not self.checkpoint():
                    break
        return deleted

    def make_room(self, target_bytes: int, max_rows: int | None = None) -> int:
        """Delete the oldest delivered events regardless of age until `used_bytes()` is at most
        TARGET_BYTES, or none is left (at most MAX_ROWS); returns rows deleted."""
        return self.purge(max_rows=max_rows, until_bytes=target_bytes)

    def _chunk_rows(self, until_bytes: int | None) -> int:
        """Rows per purge transaction: a quarter of the WAL limit's worth (a delete writes about as much
        WAL as it deletes, the vacuum after it twice that), fewer when only UNTIL_BYTES is due."""
        db = self._db
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        live = (
            db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        ) * page_size
        low = db.execute('SELECT MIN("offset") FROM events').fetchone()[0]
        rows = 0 if low is None else db.execute(HEAD_SQL).fetchone()[0] - low + 1
        per_row = max(32, live // max(1, rows))
        chunk = max(1, self.wal_limit // 4 // per_row)
        if until_bytes is not None:
            due = self.used_bytes() - until_bytes
            chunk = min(chunk, max(1, -(-due // per_row)))
        return chunk

    def _delete_prefix(self, limit: int, accepted_before: float | None) -> int:
        """One transaction: delete up to LIMIT of the lowest delivered rows (accepted before
        ACCEPTED_BEFORE when given). Rows are in offset order by accepted_at: a prefix again."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            bound = self._delivered_mark()
            if bound is None:
                bound = db.execute(HEAD_SQL).fetchone()[0]
            low = db.execute('SELECT MIN("offset") FROM events').fetchone()[0]
            if low is not None:
                bound = min(bound, low + limit - 1)
            if low is not None and accepted_before is not None:
                young = db.execute(FIRST_YOUNG_SQL, (accepted_before,)).fetchone()
                if young is not None:
                    bound = min(bound, young[0] - 1)
            deleted = 0 if low is None else db.execute('DELETE FROM events WHERE "offset" <= ?', (bound,)).rowcount
            if deleted > 0:
                self._purge_envelopes(bound)  # bulk envelope records go with their last event
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return max(deleted, 0)

    def _vacuum_step(self) -> None:
        """Hand free pages back to the file system, at most a quarter of the WAL limit's worth (moving a
        page writes it, its parent and its pointer-map page); busy: the next purge does it."""
        db = self._db
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        if free:
            pages = max(1, self.wal_limit // 4 // db.execute("PRAGMA page_size").fetchone()[0])
            try:
                # executescript steps the pragma to completion; execute() would free one page only
                db.executescript(f"PRAGMA incremental_vacuum({min(free, pages)});")
            except sqlite3.OperationalError:
                pass

    def checkpoint(self) -> bool:
        """Copy the WAL into the database and truncate it; False (quietly) when readers kept it."""
        with self._lock:
            db = self._db
            try:
                db.execute(f"PRAGMA busy_timeout = {CHECKPOINT_BUSY_TIMEOUT_MS}")
                return db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
            except sqlite3.OperationalError:
                return False
            finally:
                try:
                    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                except sqlite3.Error:
                    pass

    def limit_wal(self, max_bytes: int) -> None:
        """Keep the WAL near MAX_BYTES: the autocheckpoint and the file's size after a restart, the
        size of a purge transaction. (The broker checkpoints explicitly as well: readers defeat
        the automatic one.)"""
        with self._lock:
            self.wal_limit = max_bytes
            page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
            self._db.execute(f"PRAGMA wal_autocheckpoint = {max(8, max_bytes // page_size)}")
            self._db.execute(f"PRAGMA journal_size_limit = {max_bytes}")

    def used_bytes(self) -> int:
        """Bytes the journal really holds: live pages plus the WAL file."""
        with self._lock:
            page_count = self._db.execute("PRAGMA page_count").fetchone()[0]
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
            page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return (page_count - free) * page_size + wal_bytes(self.path)

    def file_bytes(self) -> int:
        """Bytes on disk: the database file plus the WAL."""
        try:
            size = os.path.getsize(self.path)
        except OSError:
            size = 0
        return size + wal_bytes(self.path)

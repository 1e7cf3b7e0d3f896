"""One open handle on the journal file `{state_dir}/journal.sqlite3`: opening it (creating or
upgrading its tables, bus/journal_schema.py, optionally checking every page), its epoch, and
the readings the broker's writer and the supervisor's admin handle share (head, extent,
retained rows). The writer is bus/journal_writer.py's `JournalWriter`, the admin handle
bus/journal.py's `JournalAdmin`; a worker's own connection is bus/journal_reader.py's.

SQLite habits (README, "Design"): WAL, synchronous=NORMAL (survives kill -9), one
writer with BEGIN IMMEDIATE and a busy_timeout, auto_vacuum=INCREMENTAL set
before the tables exist, and connections in autocommit mode
(isolation_level=None) so that no connection ever keeps a read transaction open
between calls: a long-lived reader must not pin the WAL.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
from typing import NamedTuple

from bus.journal_reader import Connection
from bus.journal_schema import (
    HEAD_SQL,
    JournalCorrupt,
    JournalFull,
    closed_if_unusable,
    connect,
    create_or_upgrade,
    is_full,
    read_epoch,
)
from bus.shadow_marks import peek_mark, shadow_path

DEFAULT_WAL_LIMIT = 8 * 1024 * 1024  # bytes of WAL until `limit_wal` says otherwise


class Extent(NamedTuple):
    """The rows held, as one consistent reading."""

    low: int | None  # the lowest offset held (None: no row)
    delivered: int  # rows at or below this are delivered (MIN(cursor), or the head without cursors)
    head: int
    oldest_at: float | None  # accepted_at of the lowest row when it is delivered

    @property
    def retained(self) -> int:
        return 0 if self.low is None else max(0, self.delivered - self.low + 1)

    @property
    def undelivered(self) -> int:
        return 0 if self.low is None else self.head - max(self.delivered, self.low - 1)


class JournalHandle(Connection):
    """One connection to the journal (serialised by a lock): opened or created, with the readings both handles make."""

    def __init__(self, path: str, *, verify: bool = False):
        """VERIFY: also read every page of an existing journal (PRAGMA quick_check), so a
        garbled page is found now rather than by a worker stuck on it later (agent start)."""
        self.path = path
        parent = os.path.dirname(os.path.abspath(path))
        self.shadow_dir = parent  # the workers' cursor shadows sit next to the journal (bus/shadow_marks.py)
        os.makedirs(parent, mode=0o750, exist_ok=True)
        created = not os.path.exists(path)
        self._lock = threading.RLock()  # re-entrant: purge measures and checkpoints under it
        self.wal_limit = DEFAULT_WAL_LIMIT
        try:
            self._open(path, verify and not created)
        except sqlite3.Error as exc:
            if is_full(exc):  # one line for the log, not a traceback: the supervisor retries with backoff
                raise JournalFull(f"journal {path} cannot be opened: the disk is full ({exc})") from None
            raise
        if created:
            try:
                os.chmod(path, 0o640)
            except OSError:
                pass

    def _open(self, path: str, verify: bool) -> None:
        self._db = connect(path, must_exist=False)
        with closed_if_unusable(self._db, path):
            self.epoch = self._open_or_create()
            self.page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
            if verify:
                found = self._db.execute("PRAGMA quick_check(1)").fetchone()
                if found is None or found[0] != "ok":
                    problem = " ".join(str(found and found[0]).split())[:200]  # one line
                    raise JournalCorrupt(f"journal {path} failed its integrity check: {problem}")
            # the clamp that keeps accepted_at in offset order (MAX through the index)
            self._last_at = self._db.execute("SELECT MAX(accepted_at) FROM events").fetchone()[0] or 0.0

    def _open_or_create(self) -> str:
        db = self._db
        # auto_vacuum only takes effect when set before the first table exists.
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch journal to WAL mode (got {mode})")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(f"PRAGMA journal_size_limit = {self.wal_limit}")
        # Debian's and Python's SQLite zero every freed page (SECURE_DELETE): a purge would then
        # write as much WAL as it deletes, which a full disk cannot take. FAST zeroes in place only.
        db.execute("PRAGMA secure_delete = FAST")
        db.execute("BEGIN IMMEDIATE")
        try:
            create_or_upgrade(db, self.path, time.time())
            db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('epoch', ?)", (secrets.token_hex(8),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return read_epoch(db, self.path)

    def head(self) -> int:
        """The highest offset ever assigned (0 if none); survives purge and reopen."""
        with self._lock:
            return self._db.execute(HEAD_SQL).fetchone()[0]

    def holds_events(self) -> bool:
        """True while any event row is left."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM events LIMIT 1").fetchone() is not None

    def extent(self) -> Extent:
        """The rows held: lowest offset, delivered bound, head, the lowest delivered row's accepted_at."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")  # one snapshot: the broker may purge between two statements
            try:
                low = db.execute('SELECT MIN("offset") FROM events').fetchone()[0]
                lowest_cursor = self._delivered_mark()
                head = db.execute(HEAD_SQL).fetchone()[0]
                delivered = head if lowest_cursor is None else min(lowest_cursor, head)
                oldest_at = None
                if low is not None and low <= delivered:
                    oldest_at = db.execute('SELECT accepted_at FROM events WHERE "offset" = ?', (low,)).fetchone()[0]
            finally:
                db.execute("COMMIT")
        return Extent(low, delivered, head, oldest_at)

    def _delivered_mark(self) -> int | None:
        """Inside the caller's transaction: the offset at or below which every sink has its rows (None:
        no cursor row). A sink's cursor row, or its shadow's mark when that vouches for a later one."""
        marks = [
            peek_mark(shadow_path(self.shadow_dir, sink), self.epoch, committed)
            for sink, committed in self._db.execute('SELECT sink, "offset" FROM cursors')
        ]
        return min(marks, default=None)

    def retained(self) -> int:
        """Delivered rows still kept (for replay)."""
        return self.extent().retained

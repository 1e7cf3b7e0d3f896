"""The durable journal: every accepted bus event, keyed by a never-reused offset.

Owns the SQLite file `{state_dir}/journal.sqlite3` through its two kinds of
connection (tables and upgrades: bus/journal_schema.py; dead letters:
bus/dead_letters.py; bulk envelope records: bus/envelope_records.py; the reserve
file and quarantine: bus/journal_files.py).
`Journal` is the broker's writer (append, purge with retention, make room,
checkpoint, measure) and the supervisor's admin handle (cursor rows, replay
window, dead letters). A worker's own connection is bus/journal_reader.py's
`JournalReader`.

Invariants the counts rely on: offsets are assigned consecutively (AUTOINCREMENT;
a rolled-back batch assigns none) and a purge only ever deletes a prefix, so the
rows held are exactly MIN(offset)..head and a count is a difference of offsets,
never a COUNT(*). `accepted_at` never decreases with the offset (append clamps a
clock stepped back), so "accepted at or after T" is a suffix of the rows, found
with one lookup in its index.

A delivered row is one at or below every sink's delivered mark: its cursor row,
or further its cursor shadow's mark (bus/shadow_marks.py) while that vouches
for the row, since a worker commits its cursor only about once a second (every
row when no cursor row exists). Retention keeps delivered rows (`purge(accepted_before=...)`);
`make_room` deletes the oldest delivered rows regardless of age.

The WAL: a reader that is reading whenever a writer commits (a worker catching
up) keeps SQLite from restarting the WAL, so the passive autocheckpoint copies
frames but the file grows by every transaction (three pages or more each, even
for one row), and journal_size_limit only truncates it to that limit on a
restart. A large delete writes about as much WAL as it deletes, a vacuum as much
as it moves, twice or more. So purges go in chunks of a quarter of the WAL limit, each followed by a
TRUNCATE checkpoint (which waits briefly for readers), and stop when one fails;
the broker checkpoints explicitly too once it has written about the limit.

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
from collections.abc import Iterable
from typing import NamedTuple

import msgspec

from bus import numbering
from bus.dead_letters import DeadLetter, DeadLetterDesk  # noqa: F401 - re-exported
from bus.envelope_records import EnvelopeDesk
from bus.journal_reader import Connection
from bus.journal_files import SpaceReserve, quarantine  # noqa: F401 - re-exported
from bus.journal_schema import (  # noqa: F401 - JournalCorrupt, JournalFull: re-exported
    BUSY_TIMEOUT_MS, HEAD_SQL, JournalCorrupt, JournalFull, closed_if_unusable, connect,
    create_or_upgrade, is_full, read_epoch, wal_bytes,
)
from bus.shadow_marks import peek_mark, shadow_path

CHECKPOINT_BUSY_TIMEOUT_MS = 50  # a checkpoint never blocks the broker for long
DEFAULT_WAL_LIMIT = 8 * 1024 * 1024  # bytes of WAL until `limit_wal` says otherwise

_FIRST_YOUNG_SQL = 'SELECT "offset" FROM events WHERE accepted_at >= ? ORDER BY accepted_at, "offset" LIMIT 1'


class ReplayWindow(msgspec.Struct, frozen=True):
    """What a replay from a time would re-send (see `Journal.replay_window`)."""

    events: int  # retained rows at or below the cursor accepted at or after the time
    first_offset: int | None  # the lowest of them
    oldest_retained: float | None  # accepted_at of the oldest row at or below the cursor


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


class Journal(DeadLetterDesk, EnvelopeDesk, Connection):
    """The broker's writer and the supervisor's admin handle (one connection, serialised by a lock)."""

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
        self._db = connect(path, must_exist=False)
        with closed_if_unusable(self._db, path):
            self.epoch = self._open_or_create()
            self.page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
            if verify and not created:
                found = self._db.execute("PRAGMA quick_check(1)").fetchone()
                if found is None or found[0] != "ok":
                    problem = " ".join(str(found and found[0]).split())[:200]  # one line
                    raise JournalCorrupt(f"journal {path} failed its integrity check: {problem}")
            # the clamp that keeps accepted_at in offset order (MAX through the index)
            self._last_at = self._db.execute("SELECT MAX(accepted_at) FROM events").fetchone()[0] or 0.0
        if created:
            try:
                os.chmod(path, 0o640)
            except OSError:
                pass

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

    # ------------------------------------------------------------ writing

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
                self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('write_probe', ?)", (repr(time.time()),))
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

    def head(self) -> int:
        """The highest offset ever assigned (0 if none); survives purge and reopen."""
        with self._lock:
            return self._db.execute(HEAD_SQL).fetchone()[0]

    def holds_events(self) -> bool:
        """True while any event row is left."""
        with self._lock:
            return self._db.execute('SELECT 1 FROM events LIMIT 1').fetchone() is not None

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
        marks = [peek_mark(shadow_path(self.shadow_dir, sink), self.epoch, committed)
                 for sink, committed in self._db.execute('SELECT sink, "offset" FROM cursors')]
        return min(marks, default=None)

    def retained(self) -> int:
        """Delivered rows still kept (for replay)."""
        return self.extent().retained

    # ------------------------------------------------------------ cursors and replay

    def ensure_cursor(self, sink: str) -> int:
        """SINK's cursor, created at the current head when it has none (a new sink starts at the head)."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(f'INSERT OR IGNORE INTO cursors(sink, "offset") VALUES (?, ({HEAD_SQL}))', (sink,))
                row = db.execute('SELECT "offset" FROM cursors WHERE sink = ?', (sink,)).fetchone()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return row[0]

    def set_cursor(self, sink: str, offset: int) -> None:
        """Set SINK's cursor to exactly OFFSET, backwards too (a replay: the supervisor does it while the
        sink's worker is not running). Rows above a rewound cursor are undelivered again, so no purge
        takes them. ValueError for an offset below 0 or above the head."""
        with self._lock:
            head = self._db.execute(HEAD_SQL).fetchone()[0]
            if not 0 <= offset <= head:
                raise ValueError(f"cursor {offset} is outside 0..{head} (the journal's head)")
            self._db.execute('INSERT INTO cursors(sink, "offset") VALUES (?, ?) '
                             'ON CONFLICT(sink) DO UPDATE SET "offset" = excluded."offset"', (sink, offset))

    def drop_cursors_except(self, sinks: Iterable[str]) -> None:
        """Delete the cursor rows, the dead letters and the envelope records of every sink not in SINKS."""
        keep = list(sinks)
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if keep:
                    db.execute(f"DELETE FROM cursors WHERE sink NOT IN ({','.join('?' * len(keep))})", keep)
                else:
                    db.execute("DELETE FROM cursors")
                self._drop_dead_letters_except(keep)
                self._drop_envelopes_except(keep)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def cursors(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute('SELECT sink, "offset" FROM cursors'))

    def replay_window(self, sink: str, since: float, cursor: int | None = None) -> ReplayWindow:
        """The retained rows a replay of SINK from SINCE (Unix seconds) would re-send: those at or
        below CURSOR (default: SINK's cursor row; 0 without one) accepted at or after SINCE."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")  # one snapshot: the broker may purge between two statements
            try:
                if cursor is None:
                    row = db.execute('SELECT "offset" FROM cursors WHERE sink = ?', (sink,)).fetchone()
                    cursor = row[0] if row else 0
                cursor = min(cursor, db.execute(HEAD_SQL).fetchone()[0])
                low = db.execute('SELECT MIN("offset") FROM events').fetchone()[0]
                if low is None or low > cursor:
                    return ReplayWindow(0, None, None)
                oldest = db.execute('SELECT accepted_at FROM events WHERE "offset" = ?', (low,)).fetchone()[0]
                first = db.execute(_FIRST_YOUNG_SQL, (since,)).fetchone()
            finally:
                db.execute("COMMIT")
        if first is None or first[0] > cursor:
            return ReplayWindow(0, None, oldest)
        return ReplayWindow(cursor - first[0] + 1, first[0], oldest)

    # ------------------------------------------------------------ housekeeping

    def purge(self, max_rows: int | None = None, accepted_before: float | None = None,
              until_bytes: int | None = None) -> int:
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
        live = (db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]) * page_size
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
                young = db.execute(_FIRST_YOUNG_SQL, (accepted_before,)).fetchone()
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

"""The durable journal: every accepted bus event, keyed by a never-reused offset.

Owns the SQLite file `{state_dir}/journal.sqlite3` (schema in docs/internals.md):

    meta(key, value)                   'epoch': 16 hex chars chosen at creation
    events("offset", topic, payload)   INTEGER PRIMARY KEY AUTOINCREMENT: offsets are
                                       never reused, even after a purge or a reopen
    cursors(sink, "offset")            each worker's low-water mark

`Journal` is the broker's writer (append, purge, checkpoint) and the supervisor's
admin handle (cursor rows). `JournalReader` is one worker's own connection: it
reads events and moves only its own cursor.

SQLite habits (README, "Design"): WAL, synchronous=NORMAL (survives kill -9), one
writer with BEGIN IMMEDIATE and a busy_timeout, auto_vacuum=INCREMENTAL set
before the tables exist, a journal_size_limit, and connections in autocommit
mode (isolation_level=None) so that no connection ever keeps a read transaction
open between calls: a long-lived reader must not pin the WAL.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable

BUSY_TIMEOUT_MS = 5000
CHECKPOINT_BUSY_TIMEOUT_MS = 50  # a checkpoint never blocks the broker for long
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the WAL is truncated to after a checkpoint
VACUUM_PAGES_PER_PURGE = 4096  # pages handed back to the file system per purge call
COMMIT_RETRIES = 20  # commit_cursor attempts on a busy database (each waits busy_timeout)

_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    'CREATE TABLE IF NOT EXISTS events("offset" INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL)',
    'CREATE TABLE IF NOT EXISTS cursors(sink TEXT PRIMARY KEY, "offset" INTEGER NOT NULL)',
)
_EXPECTED_COLUMNS = {
    "meta": ["key", "value"],
    "events": ["offset", "topic", "payload"],
    "cursors": ["sink", "offset"],
}
_HEAD_SQL = "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"


class JournalFull(Exception):
    """The journal cannot grow (disk full / SQLITE_FULL); the failed batch was rolled back."""


class JournalCorrupt(Exception):
    """The journal file is not a usable journal (garbled, not SQLite, or a foreign schema)."""


def _primary_code(exc: sqlite3.Error) -> int:
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def _is_corrupt(exc: sqlite3.Error) -> bool:
    if _primary_code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return True
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


def _is_full(exc: sqlite3.Error) -> bool:
    return _primary_code(exc) == _SQLITE_FULL or "disk is full" in str(exc).lower()


def _connect(path: str, *, must_exist: bool) -> sqlite3.Connection:
    if must_exist:
        if not os.path.exists(path):
            raise FileNotFoundError(f"journal {path} does not exist (the supervisor creates it)")
        uri = "file:" + os.path.abspath(path).replace("?", "%3f").replace("#", "%23") + "?mode=rw"
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    else:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return db


def _check_schema(db: sqlite3.Connection, path: str) -> None:
    for table, columns in _EXPECTED_COLUMNS.items():
        found = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
        if found != columns:
            raise JournalCorrupt(f"journal {path} has an unexpected schema (table {table}: {found or 'missing'})")


def _read_epoch(db: sqlite3.Connection, path: str) -> str:
    row = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
    if row is None or not isinstance(row[0], str) or len(row[0]) != 16:
        raise JournalCorrupt(f"journal {path} has no valid epoch")
    return row[0]


def _wal_bytes(path: str) -> int:
    try:
        return os.path.getsize(path + "-wal")
    except OSError:
        return 0


@contextlib.contextmanager
def _closed_if_unusable(db: sqlite3.Connection, path: str):
    """While opening: on failure close DB; a corrupt file surfaces as one-line JournalCorrupt."""
    try:
        yield
    except sqlite3.Error as exc:
        db.close()
        if _is_corrupt(exc):
            raise JournalCorrupt(f"journal {path} is corrupt: {exc}") from None
        raise
    except JournalCorrupt:
        db.close()
        raise


class _Connection:
    """One SQLite connection to the journal: closed once, also as a context manager."""

    _db: sqlite3.Connection
    _lock: contextlib.AbstractContextManager = contextlib.nullcontext()  # Journal: a real lock

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Journal(_Connection):
    """The broker's writer and the supervisor's admin handle (one connection, serialised by a lock)."""

    def __init__(self, path: str, *, verify: bool = False):
        """VERIFY: also read every page of an existing journal (PRAGMA quick_check), so a
        garbled page is found now rather than by a worker stuck on it later (agent start)."""
        self.path = path
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, mode=0o750, exist_ok=True)
        created = not os.path.exists(path)
        self._lock = threading.Lock()
        self._db = _connect(path, must_exist=False)
        with _closed_if_unusable(self._db, path):
            self.epoch = self._open_or_create(created)
            if verify and not created:
                found = self._db.execute("PRAGMA quick_check(1)").fetchone()
                if found is None or found[0] != "ok":
                    problem = " ".join(str(found and found[0]).split())[:200]  # one line
                    raise JournalCorrupt(f"journal {path} failed its integrity check: {problem}")
        if created:
            try:
                os.chmod(path, 0o640)
            except OSError:
                pass

    def _open_or_create(self, created: bool) -> str:
        db = self._db
        # auto_vacuum only takes effect when set before the first table exists.
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch journal to WAL mode (got {mode})")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        # Debian's and Python's SQLite zero every freed page (SECURE_DELETE): a purge would then
        # write as much WAL as it deletes, which a full disk cannot take. FAST zeroes in place only.
        db.execute("PRAGMA secure_delete = FAST")
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('epoch', ?)", (secrets.token_hex(8),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        _check_schema(db, self.path)
        return _read_epoch(db, self.path)

    # ------------------------------------------------------------ writing

    def append(self, rows: list[tuple[str, bytes]]) -> list[int]:
        """Journal ROWS in one transaction; returns their offsets (ascending). Raises JournalFull."""
        if not rows:
            return []
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                first = db.execute(_HEAD_SQL).fetchone()[0] + 1
                db.executemany(
                    'INSERT INTO events("offset", topic, payload) VALUES (?, ?, ?)',
                    [(first + i, topic, payload) for i, (topic, payload) in enumerate(rows)],
                )
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                if _is_full(exc):
                    raise JournalFull(f"journal {self.path} is full: {exc}") from None
                raise
        return list(range(first, first + len(rows)))

    def probe_write(self) -> bool:
        """True when a tiny write transaction succeeds (the broker's test for leaving journal-full)."""
        with self._lock:
            try:
                self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('write_probe', ?)", (repr(time.time()),))
                return True
            except sqlite3.Error:
                return False

    def head(self) -> int:
        """The highest offset ever assigned (0 if none); survives purge and reopen."""
        with self._lock:
            return self._db.execute(_HEAD_SQL).fetchone()[0]

    def holds_events(self) -> bool:
        """True while any event row is left (the broker's test for more housekeeping)."""
        with self._lock:
            return self._db.execute('SELECT 1 FROM events LIMIT 1').fetchone() is not None

    # ------------------------------------------------------------ cursors

    def ensure_cursor(self, sink: str) -> int:
        """SINK's cursor, created at the current head when it has none (a new sink starts at the head)."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(f'INSERT OR IGNORE INTO cursors(sink, "offset") VALUES (?, ({_HEAD_SQL}))', (sink,))
                row = db.execute('SELECT "offset" FROM cursors WHERE sink = ?', (sink,)).fetchone()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return row[0]

    def drop_cursors_except(self, sinks: Iterable[str]) -> None:
        """Delete the cursor rows of every sink not in SINKS."""
        keep = list(sinks)
        with self._lock:
            if keep:
                marks = ",".join("?" * len(keep))
                self._db.execute(f"DELETE FROM cursors WHERE sink NOT IN ({marks})", keep)
            else:
                self._db.execute("DELETE FROM cursors")

    def cursors(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute('SELECT sink, "offset" FROM cursors'))

    # ------------------------------------------------------------ housekeeping

    def purge(self, max_rows: int | None = None) -> int:
        """Delete events at or below MIN(cursor) (every event when no cursor row exists),
        at most MAX_ROWS of them (None = no limit), then hand free pages back; returns rows deleted."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                bound = db.execute('SELECT MIN("offset") FROM cursors').fetchone()[0]
                if bound is None:
                    bound = db.execute(_HEAD_SQL).fetchone()[0]
                if max_rows is not None:
                    lowest = db.execute('SELECT MIN("offset") FROM events').fetchone()[0]
                    if lowest is not None:
                        bound = min(bound, lowest + max_rows - 1)
                deleted = db.execute('DELETE FROM events WHERE "offset" <= ?', (bound,)).rowcount
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            if deleted or db.execute("PRAGMA freelist_count").fetchone()[0]:
                try:
                    # executescript steps the pragma to completion; execute() would free one page only
                    db.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES_PER_PURGE});")
                except sqlite3.OperationalError:
                    pass  # busy: the next purge hands the pages back
            return max(deleted, 0)

    def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it; gives up quietly when readers are busy."""
        with self._lock:
            db = self._db
            try:
                db.execute(f"PRAGMA busy_timeout = {CHECKPOINT_BUSY_TIMEOUT_MS}")
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.OperationalError:
                pass
            finally:
                try:
                    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                except sqlite3.Error:
                    pass

    def limit_wal(self, max_bytes: int) -> None:
        """Checkpoint automatically once the WAL holds about MAX_BYTES of new pages."""
        with self._lock:
            page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
            self._db.execute(f"PRAGMA wal_autocheckpoint = {max(8, max_bytes // page_size)}")

    def used_bytes(self) -> int:
        """Bytes the journal really holds: live pages plus the WAL file."""
        with self._lock:
            page_count = self._db.execute("PRAGMA page_count").fetchone()[0]
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
            page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return (page_count - free) * page_size + _wal_bytes(self.path)

    def file_bytes(self) -> int:
        """Bytes on disk: the database file plus the WAL."""
        try:
            size = os.path.getsize(self.path)
        except OSError:
            size = 0
        return size + _wal_bytes(self.path)



def quarantine(path: str, wall: float | None = None) -> tuple[str, int | None]:
    """Move a corrupt journal (with its -wal and -shm) aside as `PATH.corrupt-<UTC time>`, so a
    new one can start and the old one stays for inspection. Returns the new name and how many
    events it may have held that not every sink had (None when it cannot be read at all)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if wall is None else wall))
    target = f"{path}.corrupt-{stamp}"
    for n in range(1, 100):
        if not os.path.exists(target):
            break
        target = f"{path}.corrupt-{stamp}-{n}"
    lost = _undelivered_estimate(path)
    os.rename(path, target)
    for suffix in ("-wal", "-shm"):
        try:
            os.rename(path + suffix, target + suffix)
        except FileNotFoundError:
            pass
    return target, lost


def _undelivered_estimate(path: str) -> int | None:
    """Offsets above the lowest cursor up to the head, read-only and best effort."""
    try:
        uri = "file:" + os.path.abspath(path).replace("?", "%3f").replace("#", "%23") + "?mode=ro"
        db = sqlite3.connect(uri, uri=True, timeout=1)
    except sqlite3.Error:
        return None
    try:
        head = db.execute(_HEAD_SQL).fetchone()[0]
        low = db.execute('SELECT MIN("offset") FROM cursors').fetchone()[0]
        return max(0, head - (low or 0))
    except sqlite3.Error:
        try:
            return db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        except sqlite3.Error:
            return None
    finally:
        db.close()


class SpaceReserve:
    """A preallocated file next to the journal, given back to the file system when the disk fills.

    On a full disk SQLite cannot even delete rows or move a cursor (both write
    the WAL), so a full journal could never drain. Releasing the reserve gives
    the workers' cursor commits, the purge and the checkpoint room to work;
    `ensure()` succeeding again means the disk has room for the reserve plus
    new events."""

    def __init__(self, path: str, size: int):
        self.path = path
        self.size = size

    def present(self) -> bool:
        try:
            return os.path.getsize(self.path) >= self.size
        except OSError:
            return False

    def ensure(self) -> bool:
        """Create (allocate) the reserve if missing; False when the disk has no room for it."""
        if self.present():
            return True
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o640)
        except OSError:
            return False
        try:
            os.posix_fallocate(fd, 0, self.size)
            os.fsync(fd)
            return True
        except OSError:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            return False
        finally:
            os.close(fd)

    def release(self) -> bool:
        """Delete the reserve; True when there was one to give back."""
        try:
            os.unlink(self.path)
            return True
        except FileNotFoundError:
            return False


class JournalReader(_Connection):
    """One worker's connection: reads events, moves its own cursor, never holds a read transaction."""

    def __init__(self, path: str, sink: str):
        self.path = path
        self.sink = sink
        self._db = _connect(path, must_exist=True)
        with _closed_if_unusable(self._db, path):
            _check_schema(self._db, path)
            self.epoch = _read_epoch(self._db, path)

    def read(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        """Up to LIMIT events with offset > AFTER, ascending: (offset, topic, payload)."""
        return self._db.execute(
            'SELECT "offset", topic, payload FROM events WHERE "offset" > ? ORDER BY "offset" LIMIT ?',
            (after, limit),
        ).fetchall()

    def head(self) -> int:
        return self._db.execute(_HEAD_SQL).fetchone()[0]

    def cursor(self) -> int:
        """This sink's cursor (0 when it has no row)."""
        row = self._db.execute('SELECT "offset" FROM cursors WHERE sink = ?', (self.sink,)).fetchone()
        return row[0] if row else 0

    def commit_cursor(self, offset: int) -> None:
        """Move this sink's cursor up to OFFSET (never backwards); retries while the database is busy."""
        attempt = 0
        while True:
            try:
                self._db.execute(
                    'INSERT INTO cursors(sink, "offset") VALUES (?, ?) '
                    'ON CONFLICT(sink) DO UPDATE SET "offset" = MAX("offset", excluded."offset")',
                    (self.sink, offset),
                )
                return
            except sqlite3.OperationalError as exc:
                attempt += 1
                busy = "locked" in str(exc).lower() or "busy" in str(exc).lower()
                if not busy or attempt >= COMMIT_RETRIES:
                    raise
                time.sleep(min(0.01 * attempt, 0.1))

"""The journal's SQLite file as a file: its tables, opening a connection, recognising
(and upgrading) the shape of a journal an older version wrote, and telling a corrupt
or full database from other SQLite errors. bus/journal.py builds on this; the
schema is also described in docs/internals.md.

    meta(key, value)                   'epoch': 16 hex chars chosen at creation
    events("offset", topic, payload, accepted_at)
                                       "offset": INTEGER PRIMARY KEY AUTOINCREMENT, never reused;
                                       accepted_at: Unix seconds (wall clock) when the broker
                                       journaled it, never less than the previous row's
    cursors(sink, "offset")            each worker's low-water mark
    dead_letters(sink, "offset", ...)  events set aside for a sink (bus/dead_letters.py)
    envelopes(sink, low, high, members)
                                       a bulk sink's envelopes: which offsets, in which order
                                       (bus/envelope_records.py)
    publishers(id, seq, seen_at)       the highest sequence journaled per numbering publisher
                                       (bus/numbering.py)

Upgrade: a journal written before the envelopes or publishers table gets it on open
(CREATE TABLE IF NOT EXISTS, an empty table: no bulk envelope sent before has a record,
and every publisher id is new). A journal written before accepted_at existed (events with three columns)
gets the column on open, with the time of the upgrade as its default: ALTER TABLE
ADD COLUMN with a constant default rewrites no row, so an upgrade costs no WAL
the size of the journal (which a nearly full disk could not take). A journal
from before numbered publishing gets an empty publishers table (CREATE TABLE IF
NOT EXISTS): every publisher id is then new.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3

from bus import numbering

BUSY_TIMEOUT_MS = 5000

_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26

_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    'CREATE TABLE IF NOT EXISTS events("offset" INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, '
    "payload BLOB NOT NULL, accepted_at REAL NOT NULL)",
    'CREATE TABLE IF NOT EXISTS cursors(sink TEXT PRIMARY KEY, "offset" INTEGER NOT NULL)',
    'CREATE TABLE IF NOT EXISTS dead_letters(sink TEXT NOT NULL, "offset" INTEGER NOT NULL, topic TEXT NOT NULL, '
    "payload BLOB NOT NULL, accepted_at REAL NOT NULL, webhook_id TEXT NOT NULL, event TEXT NOT NULL, "
    "attempts INTEGER NOT NULL, status INTEGER, detail TEXT NOT NULL, set_aside_at REAL NOT NULL, "
    'redrive INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(sink, "offset"))',
    "CREATE TABLE IF NOT EXISTS envelopes(sink TEXT NOT NULL, low INTEGER NOT NULL, high INTEGER NOT NULL, "
    "members BLOB NOT NULL, PRIMARY KEY(sink, low))",
    numbering.TABLE_SQL,
)
_INDEXES = (
    # replay_window and the retention purge find the first row accepted at or after a time
    "CREATE INDEX IF NOT EXISTS events_accepted_at ON events(accepted_at)",
    # the control API names a dead letter by its webhook-id
    "CREATE INDEX IF NOT EXISTS dead_letters_id ON dead_letters(sink, webhook_id)",
    # the purge deletes the records whose last event it deletes
    "CREATE INDEX IF NOT EXISTS envelopes_high ON envelopes(high)",
)
EXPECTED_COLUMNS = {
    "meta": ["key", "value"],
    "events": ["offset", "topic", "payload", "accepted_at"],
    "cursors": ["sink", "offset"],
    "dead_letters": [
        "sink",
        "offset",
        "topic",
        "payload",
        "accepted_at",
        "webhook_id",
        "event",
        "attempts",
        "status",
        "detail",
        "set_aside_at",
        "redrive",
    ],
    "envelopes": ["sink", "low", "high", "members"],
    "publishers": numbering.COLUMNS,
}
_OLD_EVENTS_COLUMNS = ["offset", "topic", "payload"]  # before accepted_at (an older version's journal)
HEAD_SQL = "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"


class JournalFull(Exception):
    """The journal cannot grow (disk full / SQLITE_FULL); the failed batch was rolled back."""


class JournalCorrupt(Exception):
    """The journal file is not a usable journal (garbled, not SQLite, or a foreign schema)."""


def _primary_code(exc: sqlite3.Error) -> int:
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def is_corrupt(exc: sqlite3.Error) -> bool:
    if _primary_code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return True
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


def is_full(exc: sqlite3.Error) -> bool:
    return _primary_code(exc) == _SQLITE_FULL or "disk is full" in str(exc).lower()


def is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def connect(path: str, *, must_exist: bool) -> sqlite3.Connection:
    if must_exist:
        if not os.path.exists(path):
            raise FileNotFoundError(f"journal {path} does not exist (the supervisor creates it)")
        uri = "file:" + os.path.abspath(path).replace("?", "%3f").replace("#", "%23") + "?mode=rw"
        db = sqlite3.connect(
            uri, uri=True, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
    else:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return db


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def create_or_upgrade(db: sqlite3.Connection, path: str, now: float) -> None:
    """Inside the caller's write transaction: create what is missing, give an older journal's
    events table its accepted_at column (default NOW), then check every table's shape.
    Raises JournalCorrupt (the caller rolls back: nothing is written to a foreign file)."""
    for statement in _TABLES:
        db.execute(statement)
    if _columns(db, "events") == _OLD_EVENTS_COLUMNS:
        db.execute(f"ALTER TABLE events ADD COLUMN accepted_at REAL NOT NULL DEFAULT {float(now)!r}")
    check_schema(db, path)
    for statement in _INDEXES:
        db.execute(statement)


def check_schema(db: sqlite3.Connection, path: str) -> None:
    for table, columns in EXPECTED_COLUMNS.items():
        found = _columns(db, table)
        if found != columns:
            raise JournalCorrupt(f"journal {path} has an unexpected schema (table {table}: {found or 'missing'})")


def read_epoch(db: sqlite3.Connection, path: str) -> str:
    row = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
    if row is None or not isinstance(row[0], str) or len(row[0]) != 16:
        raise JournalCorrupt(f"journal {path} has no valid epoch")
    return row[0]


def wal_bytes(path: str) -> int:
    try:
        return os.path.getsize(path + "-wal")
    except OSError:
        return 0


@contextlib.contextmanager
def closed_if_unusable(db: sqlite3.Connection, path: str):
    """While opening: on failure close DB; a corrupt file surfaces as one-line JournalCorrupt."""
    try:
        yield
    except sqlite3.Error as exc:
        db.close()
        if is_corrupt(exc):
            raise JournalCorrupt(f"journal {path} is corrupt: {exc}") from None
        raise
    except JournalCorrupt:
        db.close()
        raise

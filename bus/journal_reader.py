"""A sink worker's handle on the journal: `JournalReader` reads events, moves its own sink's
cursor and keeps its own dead letters and envelope records, never holding a read transaction.
(The broker's writer is bus/journal_writer.py's, the supervisor's admin handle bus/journal.py's.)
`Connection` is what every handle shares: one SQLite connection, closed once.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time

from bus.dead_letters import DeadLetterShelf
from bus.envelope_records import EnvelopeShelf
from bus.journal_schema import HEAD_SQL, check_schema, closed_if_unusable, connect, is_busy, read_epoch

COMMIT_RETRIES = 20  # worker writes attempted on a busy database (each waits busy_timeout)


class Connection:
    """One SQLite connection to the journal: closed once, also as a context manager."""

    _db: sqlite3.Connection
    _lock: contextlib.AbstractContextManager = contextlib.nullcontext()  # JournalHandle: a real lock

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


class JournalReader(DeadLetterShelf, EnvelopeShelf, Connection):
    """One worker's connection: reads events, moves its own cursor, keeps its own dead letters,
    never holds a read transaction."""

    def __init__(self, path: str, sink: str):
        self.path = path
        self.sink = sink
        self._db = connect(path, must_exist=True)
        with closed_if_unusable(self._db, path):
            # As the broker's: a commit survives kill -9 without an fsync of the WAL each (FULL, the
            # default, synced every bulk envelope record and cursor commit).
            self._db.execute("PRAGMA synchronous = NORMAL")
            check_schema(self._db, path)  # the supervisor's JournalAdmin has upgraded an older one
            self.epoch = read_epoch(self._db, path)

    def read(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        """Up to LIMIT events with offset > AFTER, ascending: (offset, topic, payload)."""
        return self._db.execute(
            'SELECT "offset", topic, payload FROM events WHERE "offset" > ? ORDER BY "offset" LIMIT ?', (after, limit)
        ).fetchall()

    def accepted_at(self, offset: int) -> float | None:
        """When the event at OFFSET was journaled (None when it is not held). A separate call, not a
        fourth column of `read()`: only setting a dead letter aside needs it."""
        row = self._db.execute('SELECT accepted_at FROM events WHERE "offset" = ?', (offset,)).fetchone()
        return None if row is None else row[0]

    def head(self) -> int:
        return self._db.execute(HEAD_SQL).fetchone()[0]

    def cursor(self) -> int:
        """This sink's cursor (0 when it has no row)."""
        row = self._db.execute('SELECT "offset" FROM cursors WHERE sink = ?', (self.sink,)).fetchone()
        return row[0] if row else 0

    def commit_cursor(self, offset: int) -> None:
        """Move this sink's cursor up to OFFSET (never backwards); retries while the database is busy."""
        self._write(
            'INSERT INTO cursors(sink, "offset") VALUES (?, ?) '
            'ON CONFLICT(sink) DO UPDATE SET "offset" = MAX("offset", excluded."offset")',
            (self.sink, offset),
        )

    def _write(self, sql: str, params: tuple) -> None:
        """One autocommit write, retried while the database is busy (the broker's transactions)."""
        attempt = 0
        while True:
            try:
                self._db.execute(sql, params)
                return
            except sqlite3.OperationalError as exc:
                attempt += 1
                if not is_busy(exc) or attempt >= COMMIT_RETRIES:
                    raise
                time.sleep(min(0.01 * attempt, 0.1))

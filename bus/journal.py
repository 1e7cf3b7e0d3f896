"""The durable journal: every accepted bus event, keyed by a never-reused offset, in the SQLite
file `{state_dir}/journal.sqlite3` (tables and upgrades: bus/journal_schema.py; dead letters:
bus/dead_letters.py; bulk envelope records: bus/envelope_records.py; the reserve file and
quarantine: bus/journal_files.py).

Owns the supervisor's admin handle, `JournalAdmin`: the sinks' cursor rows (created at the
head, set back for a replay, dropped with their sink), the replay window, and the dead letters
(bus/dead_letters.py's `DeadLetterDesk`). The broker's writer is bus/journal_writer.py's
`JournalWriter`; both open the file through bus/journal_handle.py's `JournalHandle`, and a
worker's own connection is bus/journal_reader.py's `JournalReader`.

`Journal` is both handles on one connection, for a process that plays the broker and the
supervisor at once (the tests' rigs, the bench); the agent's processes each open only theirs.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from bus.dead_letters import DeadLetter, DeadLetterDesk  # noqa: F401 - re-exported
from bus.envelope_records import EnvelopeDesk
from bus.journal_files import SpaceReserve, quarantine  # noqa: F401 - re-exported
from bus.journal_handle import Extent, JournalHandle  # noqa: F401 - re-exported
from bus.journal_schema import HEAD_SQL, JournalCorrupt, JournalFull  # noqa: F401 - JournalCorrupt, JournalFull: re-exported
from bus.journal_writer import FIRST_YOUNG_SQL, JournalWriter


class ReplayWindow(msgspec.Struct, frozen=True):
    """What a replay from a time would re-send (see `JournalAdmin.replay_window`)."""

    events: int  # retained rows at or below the cursor accepted at or after the time
    first_offset: int | None  # the lowest of them
    oldest_retained: float | None  # accepted_at of the oldest row at or below the cursor


class JournalAdmin(DeadLetterDesk, EnvelopeDesk, JournalHandle):
    """The supervisor's handle: cursors, replay window, dead letters."""

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
            self._db.execute(
                'INSERT INTO cursors(sink, "offset") VALUES (?, ?) '
                'ON CONFLICT(sink) DO UPDATE SET "offset" = excluded."offset"',
                (sink, offset),
            )

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
                first = db.execute(FIRST_YOUNG_SQL, (since,)).fetchone()
            finally:
                db.execute("COMMIT")
        if first is None or first[0] > cursor:
            return ReplayWindow(0, None, oldest)
        return ReplayWindow(cursor - first[0] + 1, first[0], oldest)


class Journal(JournalAdmin, JournalWriter):
    """The writer and the admin handle on one connection (see the module docstring)."""

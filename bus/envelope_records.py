"""Bulk envelope records: which journal offsets one sink's bulk envelope holds, in which order
(docs/delivery.md, `bulk = true`: "An envelope keeps what it holds"), kept in the journal's own
file (table `envelopes`, bus/journal_schema.py).

A worker writes an envelope's record before its first POST and never changes it (only a split in
halves, sinks/dead_letters.py, replaces it by the halves' records before they go out), so every
retry and redelivery (after a worker kill -9, an agent restart, a replay) re-forms the same
envelope under the same webhook-id. A record lives as long as any of its events is retained:
the purge deletes it with the last of them (`high`), `drop_cursors_except` with its sink.

`members` is a packed array of signed 64-bit integers: each inner envelope's journal offset,
followed by the offsets merged into it as negative numbers (a version 1
`participant_disconnected` with its media streams). `low`/`high` are the least and greatest
offsets in it.

Two sides, mixed into the two kinds of journal connection: `EnvelopeShelf` on `JournalReader`
(the worker's, its own sink only), `EnvelopeDesk` on `JournalWriter` (purge) and `JournalAdmin` (sink removal).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

Item = tuple[int, tuple[int, ...]]  # (offset of an inner envelope, offsets merged into it)


def pack(items: Sequence[Item]) -> tuple[int, int, bytes]:
    """(low, high, members blob) of an envelope holding ITEMS in order."""
    flat = array("q")
    for offset, merged in items:
        flat.append(offset)
        flat.extend(-m for m in merged)
    every = [abs(o) for o in flat]
    return min(every), max(every), flat.tobytes()


def unpack(blob: bytes) -> list[Item]:
    flat = array("q")
    flat.frombytes(blob)
    items: list[Item] = []
    for value in flat:
        if value < 0 and items:
            offset, merged = items[-1]
            items[-1] = (offset, merged + (-value,))
        else:
            items.append((value, ()))
    return items


class EnvelopeShelf:
    """The worker's side; its class provides `_db` and `sink`."""

    def envelope_horizon(self, cursor: int) -> int:
        """The greatest `low` of this sink's records reaching above CURSOR (0: none)."""
        row = self._db.execute(
            "SELECT MAX(low) FROM envelopes WHERE sink = ? AND high > ?", (self.sink, cursor)
        ).fetchone()
        return row[0] or 0

    def envelopes_straddling(self, cursor: int) -> list[tuple[int, list[Item]]]:
        """Records that begin at or below CURSOR and hold offsets above it: (low, items)."""
        rows = self._db.execute(
            "SELECT low, members FROM envelopes WHERE sink = ? AND high > ? AND low <= ?", (self.sink, cursor, cursor)
        ).fetchall()
        return [(low, unpack(blob)) for low, blob in rows]

    def envelopes_beginning(self, after: int, through: int) -> list[tuple[int, list[Item]]]:
        """Records whose least offset is in AFTER+1..THROUGH: (low, items), by low."""
        rows = self._db.execute(
            "SELECT low, members FROM envelopes WHERE sink = ? AND low > ? AND low <= ? ORDER BY low",
            (self.sink, after, through),
        ).fetchall()
        return [(low, unpack(blob)) for low, blob in rows]

    def record_envelopes(self, envelopes: Sequence[Sequence[Item]], replacing: int | None = None) -> None:
        """Write one record per envelope of ITEMS (see `record_packed`)."""
        self.record_packed([pack(items) for items in envelopes], replacing)

    def record_packed(self, rows: Sequence[tuple[int, int, bytes]], replacing: int | None = None) -> None:
        """Write one record per (low, high, members) in one transaction (after deleting the record
        whose low is REPLACING, when given: an envelope split in halves). OR REPLACE: an offset is in
        one record only, and a record must never stop a POST from going out."""
        db = self._db
        insert = "INSERT OR REPLACE INTO envelopes(sink, low, high, members) VALUES (?, ?, ?, ?)"
        if len(rows) == 1 and replacing is None:  # one statement, its own transaction: the usual case
            db.execute(insert, (self.sink, *rows[0]))
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            if replacing is not None:
                db.execute("DELETE FROM envelopes WHERE sink = ? AND low = ?", (self.sink, replacing))
            db.executemany(insert, [(self.sink, *row) for row in rows])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


class EnvelopeDesk:
    """The broker's and supervisor's side: inside their transactions, on `_db`."""

    def _purge_envelopes(self, bound: int) -> None:
        """Delete the records whose every event is at or below BOUND (being purged)."""
        self._db.execute("DELETE FROM envelopes WHERE high <= ?", (bound,))

    def _drop_envelopes_except(self, keep: list[str]) -> None:
        if keep:
            self._db.execute(f"DELETE FROM envelopes WHERE sink NOT IN ({','.join('?' * len(keep))})", keep)
        else:
            self._db.execute("DELETE FROM envelopes")

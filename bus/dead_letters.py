"""Dead letters: events a sink set aside (docs/delivery.md, "Dead letters"), kept in the
journal's own file (table `dead_letters`, bus/journal_schema.py) until an operator
redrives or discards them. They are a copy of the event (topic, payload, accepted_at),
so the event row itself may be purged by retention like any delivered row; the
dead letter is never purged by retention or by making room (it counts in the
journal's size, being in the same file).

Two sides, mixed into the two kinds of journal connection:

- `DeadLetterShelf` (on `JournalReader`, the worker's connection, its own sink only):
  `set_aside`, `redrive_rows`, `forget_dead_letter`.
- `DeadLetterDesk` (on `JournalAdmin`, the supervisor's admin handle, any sink):
  `dead_letters`, `mark_redrive`, `discard_dead_letter`, `dead_letter_counts`;
  `JournalAdmin.drop_cursors_except` also drops the dead letters of removed sinks.

A dead letter is named by its `webhook_id` (the control API's `id`), unique per
sink since it is `epoch-offset` (bus/journal.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import msgspec

DETAIL_MAX_CHARS = 1000  # what is stored of the answer's detail (the log line shows 200)

_COLUMNS = 'webhook_id, event, accepted_at, attempts, status, detail, "offset", redrive, set_aside_at'


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """One dead letter as the supervisor sees it."""

    id: str  # the event's webhook-id
    event: str
    accepted_at: float  # when the broker journaled the event (Unix seconds)
    attempts: int
    status: int | None  # the last answer's HTTP status (None: no answer)
    detail: str
    offset: int
    redrive: bool  # flagged to be sent again by the worker
    set_aside_at: float


class DeadLetterShelf:
    """The worker's side; its class provides `_db`, `sink` and `_write(sql, params)`."""

    def set_aside(
        self,
        offset: int,
        topic: str,
        payload: bytes,
        accepted_at: float | None,
        webhook_id: str,
        event: str,
        attempts: int,
        status: int | None,
        detail: str,
    ) -> None:
        """Keep this event as a dead letter of this sink (replacing one at the same offset: a redriven
        event that failed again is set aside anew, with redrive cleared). ACCEPTED_AT None: the one
        the replaced dead letter had (its event row may be purged by now), else 0."""
        self._write(
            'INSERT OR REPLACE INTO dead_letters(sink, "offset", topic, payload, accepted_at, webhook_id, event, '
            "attempts, status, detail, set_aside_at, redrive) VALUES (?, ?, ?, ?, "
            'COALESCE(?, (SELECT accepted_at FROM dead_letters WHERE sink = ? AND "offset" = ?), 0), '
            "?, ?, ?, ?, ?, ?, 0)",
            (
                self.sink,
                offset,
                topic,
                payload,
                accepted_at,
                self.sink,
                offset,
                webhook_id,
                event,
                attempts,
                status,
                detail[:DETAIL_MAX_CHARS],
                time.time(),
            ),
        )

    def redrive_rows(self) -> list[tuple[int, str, bytes, str]]:
        """This sink's dead letters flagged for redrive, in journal order: (offset, topic, payload, webhook_id)."""
        return self._db.execute(
            'SELECT "offset", topic, payload, webhook_id FROM dead_letters WHERE sink = ? AND redrive = 1 '
            'ORDER BY "offset"',
            (self.sink,),
        ).fetchall()

    def forget_dead_letter(self, offset: int) -> None:
        """Delete this sink's dead letter at OFFSET (a redriven event has been delivered)."""
        self._write('DELETE FROM dead_letters WHERE sink = ? AND "offset" = ?', (self.sink, offset))


class DeadLetterDesk:
    """The supervisor's side; its class provides `_db` and `_lock`."""

    def dead_letters(self, sink: str) -> list[DeadLetter]:
        """SINK's dead letters in journal order."""
        with self._lock:
            rows = self._db.execute(
                f'SELECT {_COLUMNS} FROM dead_letters WHERE sink = ? ORDER BY "offset"', (sink,)
            ).fetchall()
        return [
            DeadLetter(
                id=r[0],
                event=r[1],
                accepted_at=r[2],
                attempts=r[3],
                status=r[4],
                detail=r[5],
                offset=r[6],
                redrive=bool(r[7]),
                set_aside_at=r[8],
            )
            for r in rows
        ]

    def mark_redrive(self, sink: str, ids: Sequence[str] | None) -> int:
        """Flag SINK's dead letters IDS (None or empty: all of them) to be sent again; returns how many are
        flagged. Raises KeyError naming the first id SINK has no dead letter for, flagging none."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if not ids:
                    count = db.execute("UPDATE dead_letters SET redrive = 1 WHERE sink = ?", (sink,)).rowcount
                else:
                    wanted = list(dict.fromkeys(ids))  # each once, first-named order kept
                    for webhook_id in wanted:
                        if (
                            db.execute(
                                "SELECT 1 FROM dead_letters WHERE sink = ? AND webhook_id = ?", (sink, webhook_id)
                            ).fetchone()
                            is None
                        ):
                            raise KeyError(webhook_id)
                    db.executemany(
                        "UPDATE dead_letters SET redrive = 1 WHERE sink = ? AND webhook_id = ?",
                        [(sink, w) for w in wanted],
                    )
                    count = len(wanted)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return count

    def discard_dead_letter(self, sink: str, webhook_id: str) -> bool:
        """Delete SINK's dead letter WEBHOOK_ID for good; False when there is none."""
        with self._lock:
            return (
                self._db.execute(
                    "DELETE FROM dead_letters WHERE sink = ? AND webhook_id = ?", (sink, webhook_id)
                ).rowcount
                > 0
            )

    def dead_letter_counts(self) -> dict[str, int]:
        """Dead letters held, per sink (sinks without any are absent)."""
        with self._lock:
            return dict(self._db.execute("SELECT sink, COUNT(*) FROM dead_letters GROUP BY sink"))

    def _drop_dead_letters_except(self, keep: list[str]) -> None:
        """Inside the caller's transaction: delete the dead letters of every sink not in KEEP."""
        if keep:
            marks = ",".join("?" * len(keep))
            self._db.execute(f"DELETE FROM dead_letters WHERE sink NOT IN ({marks})", keep)
        else:
            self._db.execute("DELETE FROM dead_letters")

"""A bulk sink's envelope book: every bulk envelope keeps what it holds (docs/delivery.md, `bulk = true`).

Owns `EnvelopeBook`, one per bulk worker, between the batcher (sinks/shaping.py) and the
dispatcher (sinks/delivery.py):
- a new envelope (`formed`) is recorded in the journal (bus/envelope_records.py: its journal
  offsets, in order) before it is handed to the dispatcher, so before its first POST; the
  envelopes formed in one loop turn share one transaction. A journal that cannot take the record
  (full) lets the envelope go out unrecorded (delivered at least once rather than never); one
  that is busy is tried again after RECORD_RETRY.
- an event that a recorded envelope holds (the worker's events above its cursor after a kill -9
  or an agent restart, a replay's retained events) never goes to the batcher: `route` puts its
  Post in that envelope's slot, and the slot goes out, as the same envelope under the same
  webhook-id, once every member has come, or once the worker has read past its last member
  (a member already acknowledged, purged or unreadable does not come: the rest still goes
  under the record's id, so a receiver that has the envelope keeps ignoring it).
- an agent-made event (eventsink_started, ...) and a redriven dead letter go `alone`, each in
  an envelope of its own, never recorded and never sharing one with journal events.
Records are loaded lazily: those reaching above the cursor at start, then by their least
offset as reading reaches it; above the greatest recorded one (`horizon`) nothing is looked up.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import sqlite3
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

from bus.envelope_records import Item, pack
from bus.journal_schema import is_full
from sinks.post import Post
from sinks.shaping import wrap

log = logging.getLogger("sinks.worker")

LOAD_AHEAD = 4096  # offsets of records read ahead of the event being shaped (one query per stretch)
RECORD_RETRY = 0.5  # s before a record the journal refused (busy) is written again


@dataclass(slots=True, eq=False)
class _Slot:
    """A recorded envelope being re-formed."""

    low: int
    high: int
    items: list[Item]
    webhook_id: str
    posts: dict[int, Post] = field(default_factory=dict)  # inner offset -> its Post, as they come
    sent: bool = False


def items_of(post: Post) -> list[Item]:
    """What a bulk POST holds, as a record's items (inner offset, offsets merged into it)."""
    return [(p.offsets[0], tuple(p.offsets[1:])) for p in post.parts if p.offsets]


def packed_of(post: Post) -> tuple[int, int, bytes]:
    """The record (low, high, members) of a bulk POST of journal events; without merges (the usual
    case) its flat offsets are the members as they are."""
    offsets = post.offsets
    if len(offsets) == len(post.parts):
        return min(offsets), max(offsets), array("q", offsets).tobytes()
    return pack(items_of(post))


class EnvelopeBook:
    """One bulk sink's recorded envelopes; hands finished ones to PUT (the dispatcher's queue)."""

    def __init__(self, reader, epoch: str, version: int, cursor: int, put: Callable[[Post], None]):
        self.reader = reader  # bus.journal.JournalReader (EnvelopeShelf)
        self.epoch = epoch
        self.version = version
        self._put = put
        self._members: dict[int, tuple[_Slot, Item]] = {}  # offset -> its slot and item
        self._due: list[tuple[int, int, _Slot]] = []  # heap by the slot's greatest offset
        self._tiebreak = itertools.count()
        # in send order, each with whether it needs its record first (new envelopes) or not (re-formed, lone)
        self._outgoing: list[tuple[Post, bool]] = []
        self._retry_at = 0.0
        self.recorded = 0  # envelopes recorded by this worker
        self.reformed = 0  # recorded envelopes sent again
        self.horizon = 0  # no record begins above this offset
        self._loaded = cursor  # records beginning at or below this are loaded
        try:
            self.horizon = reader.envelope_horizon(cursor)
            straddling = reader.envelopes_straddling(cursor) if self.horizon else []
        except sqlite3.Error as exc:  # new envelopes form instead: delivered again, never lost
            log.warning("sink %s: cannot read bulk envelope records (%s); re-forming them anew", reader.sink, exc)
            self.horizon, straddling = 0, []
        for low, items in straddling:
            self._open(low, items)

    # ------------------------------------------------------------ recorded envelopes

    def item_of(self, offset: int) -> Item | None:
        """The recorded item holding OFFSET (for the shaper), None when no record holds it."""
        if offset > self._loaded:
            if offset > self.horizon:
                return None
            self._load_through(offset + LOAD_AHEAD)
        found = self._members.get(offset)
        return None if found is None else found[1]

    def _load_through(self, through: int) -> None:
        try:
            records = self.reader.envelopes_beginning(self._loaded, through)
        except sqlite3.Error as exc:  # new envelopes form instead: delivered again, never lost
            log.warning("sink %s: cannot read bulk envelope records (%s); re-forming them anew", self.reader.sink, exc)
            records = []
        self._loaded = through
        for low, items in records:
            self._open(low, items)

    def _open(self, low: int, items: list[Item]) -> None:
        if not items:
            return
        every = [o for offset, merged in items for o in (offset, *merged)]
        slot = _Slot(low, max(every), items, f"{self.epoch}-{items[0][0]}+{len(items)}")
        for item in items:
            for offset in (item[0], *item[1]):
                self._members[offset] = (slot, item)
        heapq.heappush(self._due, (slot.high, next(self._tiebreak), slot))

    def route(self, post: Post) -> bool:
        """Take POST into the recorded envelope that holds it; False when none does."""
        if not self._members or not post.offsets:
            return False
        found = self._members.get(post.offsets[0])
        if found is None:
            return False
        slot = found[0]
        slot.posts[post.offsets[0]] = post
        if len(slot.posts) == len(slot.items):
            self._send(slot)
        return True

    def flush_due(self, next_offset: int, now: float, shaper) -> None:
        """Send the slots whose every member has been read (below NEXT_OFFSET) with what came."""
        if not self._due or self._due[0][0] >= next_offset:
            return
        shaper.release_awaiting(next_offset, now)  # may complete slots
        while self._due and self._due[0][0] < next_offset:
            slot = heapq.heappop(self._due)[2]
            if not slot.sent:
                self._send(slot)

    def _send(self, slot: _Slot) -> None:
        slot.sent = True
        for item in slot.items:
            for offset in (item[0], *item[1]):
                self._members.pop(offset, None)
        parts = [slot.posts[offset] for offset, _ in slot.items if offset in slot.posts]
        if parts:
            self.reformed += 1
            self._outgoing.append((wrap(parts, self.version, webhook_id=slot.webhook_id), False))

    # ------------------------------------------------------------ new envelopes

    def formed(self, post: Post) -> None:
        """A new envelope from the batcher: recorded before it goes out."""
        self._outgoing.append((post, True))

    def alone(self, post: Post) -> None:
        """An agent-made event or a redriven dead letter, wrapped on its own: goes out unrecorded."""
        self._outgoing.append((post, False))

    def send_recorded(self, now: float) -> None:
        """Record the new envelopes (one transaction), then hand everything outgoing to the dispatcher."""
        if not self._outgoing or now < self._retry_at:
            return
        new = [packed_of(post) for post, needs_record in self._outgoing if needs_record]
        if new and not self._record(new, now):
            return
        self.recorded += len(new)
        for post, _ in self._outgoing:
            self._put(post)
        self._outgoing.clear()

    def _record(self, envelopes: list[tuple[int, int, bytes]], now: float) -> bool:
        try:
            self.reader.record_packed(envelopes)
            return True
        except sqlite3.Error as exc:
            if is_full(exc):
                log.warning(
                    "sink %s: the journal cannot take %d bulk envelope records (%s); sending them unrecorded",
                    self.reader.sink,
                    len(envelopes),
                    exc,
                )
                return True
            log.warning(
                "sink %s: cannot record %d bulk envelopes yet (%s); retrying", self.reader.sink, len(envelopes), exc
            )
            self._retry_at = now + RECORD_RETRY
            return False

    def split(self, whole: Post, halves: tuple[Post, ...]) -> bool:
        """WHOLE (refused) is split: the halves' records replace its record before they go out.
        False when the journal refused: the whole is retried as it is."""
        try:
            self.reader.record_envelopes([items_of(h) for h in halves], replacing=min(whole.offsets))
            return True
        except sqlite3.Error as exc:
            log.warning(
                "sink %s: cannot record the halves of bulk envelope %s (%s); retrying it whole",
                self.reader.sink,
                whole.webhook_id,
                exc,
            )
            return False

    def next_deadline(self) -> float | None:
        return self._retry_at if self._outgoing else None

    def close(self, now: float, shaper) -> None:
        """Bulk is turned off: what is in slots goes as it is, everything outgoing is handed over
        (unrecorded if the journal refuses: this book is gone after this)."""
        shaper.release_awaiting(float("inf"), now)
        for _, _, slot in self._due:
            if not slot.sent:
                self._send(slot)
        self._retry_at = 0.0
        self.send_recorded(now)
        for post, _ in self._outgoing:
            self._put(post)
        self.drop()

    def drop(self) -> None:
        """The publisher stopped: forget what is in memory (it stays in the journal, records too)."""
        self._outgoing.clear()
        self._members.clear()
        self._due.clear()
        self._loaded = -1  # nothing is read again by this worker; a restarted one loads afresh
        self.horizon = 0

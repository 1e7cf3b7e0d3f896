"""The conservation oracle of the fault suite: every journaled event comes back.

Vector's buffer tests are the model: every acknowledged id comes back,
duplicates are allowed, gaps fail. Here "acknowledged" is "journaled":

- Every test event carries a unique `data.fid` (tests/faults/loadgen.py).
- The journal's offsets are contiguous and never reused (AUTOINCREMENT; a
  rolled-back batch assigns none), so the events journaled since a test began
  are exactly the offsets `head0+1 .. head`, read from `sqlite_sequence` even
  after the purge has deleted the delivered rows: `journaled = head - head0`.
- A worker delivers only what it read from the journal or the fan-out (which
  carries journaled events only), so the distinct fids a receiver got are a
  subset of the journaled ones; `distinct == journaled` therefore means the
  two sets are equal. Each fid must also be one a publisher sent.
- Without bulk each POST's `webhook-id` is `epoch-offset`: the delivered
  offsets must then be exactly `head0+1 .. head`, and one fid must always come
  with one webhook-id (a redelivery keeps its id).
- The broker's `received` counter (status `bus.received`, metric
  `eventsink_bus_received_total`) must equal `journaled` too.
- Dead letters are kept, not lost: an event held in the journal's dead-letter
  table (its envelope as sent, under its journal offset) counts as accounted
  for, like a delivered one. Every journaled event is delivered or held.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field

HEAD_SQL = "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"


def _read_only(path: str, sql: str) -> list[tuple]:
    """Run one query on the journal through its own read-only connection."""
    db = sqlite3.connect("file:" + os.path.abspath(path) + "?mode=ro", uri=True, timeout=5)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def journal_head(path: str) -> int:
    """The highest offset ever journaled (0 for a journal without events), read-only."""
    return _read_only(path, HEAD_SQL)[0][0]


def journal_epoch(path: str) -> str:
    return _read_only(path, "SELECT value FROM meta WHERE key = 'epoch'")[0][0]


def journal_rows(path: str) -> int:
    return _read_only(path, "SELECT COUNT(*) FROM events")[0][0]


def journal_cursors(path: str) -> dict[str, int]:
    return dict(_read_only(path, 'SELECT sink, "offset" FROM cursors'))


def journal_dead_letters(path: str) -> dict[int, str]:
    """Journal offset -> fid of every dead letter held (of any sink), read-only."""
    rows = _read_only(path, 'SELECT "offset", payload FROM dead_letters WHERE "offset" > 0')
    return {offset: json.loads(payload)["data"].get("fid", "") for offset, payload in rows}


def journal_file_bytes(path: str) -> int:
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.path.getsize(path + suffix)
        except OSError:
            pass
    return total


@dataclass
class Tally:
    """What a receiver accepted (2xx), counted per fid; updated incrementally from `receiver.requests`."""

    receiver: object
    counts: Counter = field(default_factory=Counter)  # fid -> times delivered
    ids: dict = field(default_factory=dict)  # fid -> set of webhook-ids (non-bulk POSTs)
    offsets: set = field(default_factory=set)  # journal offsets seen in webhook-ids (non-bulk POSTs)
    lifecycle: Counter = field(default_factory=Counter)  # eventsink_* name -> count
    order: list = field(default_factory=list)  # (arrival time, seq) of each non-bulk POST
    posts: int = 0
    _seen: int = 0

    def update(self) -> Tally:
        requests = self.receiver.requests
        end = len(requests)
        for req in requests[self._seen : end]:
            if req.problem is not None or not 200 <= req.status < 300:
                continue
            self.posts += 1
            envelope = json.loads(req.body)
            bulk = envelope.get("event") == "eventsink_bulk"
            wid = req.headers.get("webhook-id", "")
            for ev in envelope["data"] if bulk else [envelope]:
                name = ev.get("event", "")
                if name.startswith("eventsink_"):
                    self.lifecycle[name] += 1
                    if not bulk:
                        self.order.append((req.t, ev.get("seq")))
                    continue
                fid = ev["data"]["fid"]
                self.counts[fid] += 1
                if not bulk:
                    self.ids.setdefault(fid, set()).add(wid)
                    offset = int(wid.rsplit("-", 1)[1])
                    self.offsets.add(offset)
                    self.order.append((req.t, ev.get("seq")))
        self._seen = end
        return self

    def out_of_order(self) -> list[tuple[int, int]]:
        """(seq before, seq after) where one publisher run (from its eventsink_started at seq 1)
        went back in seq, by arrival time (a stalled request is recorded late but arrived in
        order); a repeat of the same seq (a retry) is not going back."""
        found, last = [], 0
        for _, seq in sorted(self.order, key=lambda pair: pair[0]):
            if seq == 1:
                last = 1
            elif seq < last:
                found.append((last, seq))
            else:
                last = seq
        return found

    @property
    def distinct(self) -> int:
        return len(self.counts)

    @property
    def delivered(self) -> int:
        return sum(self.counts.values())

    @property
    def duplicates(self) -> int:
        return self.delivered - self.distinct


@dataclass
class Verdict:
    """The outcome of one conservation check, with the figures the report prints."""

    test: str
    journaled: int
    delivered: int
    distinct: int
    duplicates: int
    published: int
    received_counter: int | None
    problems: list[str]
    extra: str = ""

    def line(self) -> str:
        counter = "" if self.received_counter is None else f" received_counter={self.received_counter}"
        extra = f" {self.extra}" if self.extra else ""
        return (
            f"{self.test}: published={self.published} journaled={self.journaled} delivered={self.delivered} "
            f"distinct={self.distinct} duplicates={self.duplicates}{counter}{extra}"
        )


class Ledger:
    """One test's view of the journal: the head it started from, and what was published."""

    def __init__(self, journal_path: str, head0: int | None = None):
        self.path = journal_path
        self.head0 = journal_head(journal_path) if head0 is None else head0
        self.published: dict[str, int] = {}  # loadgen prefix -> events it reported sent

    def journaled(self) -> int:
        return journal_head(self.path) - self.head0

    def add_published(self, prefix: str, count: int) -> None:
        self.published[prefix] = self.published.get(prefix, 0) + count

    def is_published(self, fid: str) -> bool:
        prefix, _, index = fid.rpartition("-")
        return index.isdigit() and int(index) < self.published.get(prefix, 0)

    def received_counter(self, agent, timeout: float = 5.0) -> int:
        """The agent's received counter once it has caught up with the journal (reports come
        every 0.25 s); after TIMEOUT whatever it says, for the verdict to judge."""
        deadline = time.monotonic() + timeout
        while True:
            received = agent.status()["bus"]["received"]
            if received == self.journaled() or time.monotonic() >= deadline:
                return received
            time.sleep(0.05)

    def held(self, tally: Tally) -> dict[int, str]:
        """Dead letters held that were never delivered: journal offset -> fid."""
        return {o: f for o, f in journal_dead_letters(self.path).items() if f not in tally.counts}

    def conserved(self, tally: Tally) -> bool:
        """True once every journaled event has been delivered or is held as a dead letter (cheap enough to poll)."""
        tally.update()
        return tally.distinct + len(self.held(tally)) >= self.journaled()

    def verdict(
        self,
        test: str,
        tally: Tally,
        *,
        received_counter: int | None = None,
        check_offsets: bool = True,
        check_order: bool = False,
        extra: str = "",
    ) -> Verdict:
        tally.update()
        head = journal_head(self.path)
        journaled = head - self.head0
        held = self.held(tally)
        problems = []
        foreign = [f for f in [*tally.counts, *held.values()] if not self.is_published(f)]
        if foreign:
            problems.append(f"{len(foreign)} delivered or held fids were never published, e.g. {foreign[:3]}")
        if tally.distinct + len(held) != journaled:
            problems.append(
                f"{journaled} events journaled but {tally.distinct} distinct delivered and {len(held)} "
                f"held as dead letters ({journaled - tally.distinct - len(held)} missing)"
            )
        if check_offsets:
            expected = set(range(self.head0 + 1, head + 1))
            missing = sorted(expected - tally.offsets - set(held))
            if missing:
                problems.append(f"{len(missing)} journaled offsets never delivered, e.g. {missing[:5]}")
            unexpected = sorted(tally.offsets - expected)
            if unexpected:
                problems.append(f"offsets outside this test's journal range delivered: {unexpected[:5]}")
            changed = [f for f, ids in tally.ids.items() if len(ids) != 1]
            if changed:
                problems.append(f"{len(changed)} events redelivered under another webhook-id, e.g. {changed[:3]}")
        if check_order and (backwards := tally.out_of_order()):
            problems.append(
                f"{len(backwards)} deliveries went back in seq within one publisher run, e.g. {backwards[:3]}"
            )
        if received_counter is not None and received_counter != journaled:
            problems.append(f"the broker's received counter says {received_counter}, the journal {journaled}")
        published = sum(self.published.values())
        if held:
            extra = f"dead_letters={len(held)} {extra}".rstrip()
        return Verdict(
            test,
            journaled,
            tally.delivered,
            tally.distinct,
            tally.duplicates,
            published,
            received_counter,
            problems,
            extra,
        )

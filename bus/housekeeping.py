"""The broker's care of its journal: the housekeeping rounds (purge what every
sink has once retention_hours have passed, make room, checkpoint the WAL,
measure), making room before an append would pass the bound, and the
journal-full state (entered on the bound or a full disk, left once there is
room and a write succeeds).

`JournalKeeper` is an object the broker (bus/broker.py) holds. Its interface, narrow on
purpose: `open(journal, reserve_path)`, `commit(rows, size, publish)` (journal in as few
transactions as the bound allows, `publish(rows, offsets)` after each), `check_disk()` (the
broker's heartbeat), and the figures a report tells (`used_estimate`, `retained`, `full`).
It registers its own deadlines on the broker's loop (common/loop.py): the housekeeping
round and, while full, the retry; it tells the broker of a change of the full state through
`on_full_change` (the broker reports at once) and of a finished round through `on_round_done`
(a report is due sooner when the figures changed), and refuses events on the broker's RejectLog.

Two states, two names: `full` is the journal-full state (the report's `journal_full`, the
supervisor's alarm), `RejectReason.JOURNAL_FULL` the reason an event is refused while in it
(or when it could never fit).

Room: delivered rows kept for replay (retained) give way, oldest first and
regardless of age, whenever room is needed: a round finds the journal at
ROOM_MARK of its bound (or the disk full), or an append would pass the bound
(`room_for`), or an append fails on a full disk (`append_on_full_disk`). Only
undelivered rows and dead letters can make the journal refuse an event.

When rounds run: HOUSEKEEPING_INTERVAL after a commit (later commits do not
push it back, so a steady stream gets one round a second); after a round,
again in HOUSEKEEPING_INTERVAL while it deleted rows, a burst is coming in or
the journal is full, backing off (doubling, up to HOUSEKEEPING_MAX_INTERVAL)
while undelivered rows stay (a sink that does not deliver); when the oldest
retained row expires (plus a little slack, so that an idle journal is purged
in a few rounds, not one per second of its history); not at all once the
journal holds no event: an idle broker with an empty journal never wakes for
housekeeping.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable

from bus.journal_files import SpaceReserve
from bus.journal_schema import JournalFull
from bus.journal_writer import JournalWriter
from bus.validate import REJECT_LOG_INTERVAL, RejectLog
from common import logs
from common.logs import RateLimited, suppressed_note
from common.loop import Loop, Timer
from common.vocabulary import RejectReason

log = logging.getLogger("eventsink.bus")
support = logging.getLogger(logs.SUPPORT)

HOUSEKEEPING_INTERVAL = 1.0  # s from a commit (or a round that deleted rows) to the next purge + checkpoint
HOUSEKEEPING_MAX_INTERVAL = 60.0  # s: rounds that delete nothing while rows remain back off up to this
PURGE_MAX_DEFER = 5.0  # s the purge may wait while a burst is being journaled ...
PURGE_DEFER_MAX_RATIO = 0.5  # ... and only while the journal holds less than this share of its bound
FULL_RETRY_INTERVAL = 1.0  # s between attempts to leave journal_full
FULL_RESUME_RATIO = 0.95  # leave journal_full only below this share of the bound
PURGE_MAX_ROWS = 200_000  # events deleted per housekeeping round
RESERVE_MAX_BYTES = 8 * 1024 * 1024  # disk space held back for draining a journal on a full disk
RESERVE_MIN_BYTES = 64 * 1024
ROW_OVERHEAD = 64  # bytes a journal row costs beyond its topic and payload, its index entry included (estimate)
LEAF_HEADER = 40  # bytes of a leaf page that hold no cell (header, and a little slack)
WAL_FRAME_HEADER = 24
TX_PAGES = 4  # pages a transaction writes to the WAL beyond its rows (leaves of the table, index, sequence)
EMPTY_JOURNAL_PAGES = 16  # pages a journal without events takes: its tables, indexes, pointer map (12 measured)
ROOM_MARK = 0.8  # share of the bound at which a round makes room from retained rows ...
ROOM_TARGET = 0.75  # ... down to this share
EXPIRY_SLACK_SHARE = 0.01  # a retained row may outlive retention_hours by this share of it ...
EXPIRY_SLACK_MAX = 60.0  # ... and at most this many seconds
EXPIRY_MIN_WAIT = 0.1  # s: the soonest a round is scheduled for an expiry
FULL_MESSAGE = "the journal is full; event not accepted"

Rows = list[tuple[str, bytes]]  # (topic, payload) or an Accepted: what the journal appends


class JournalKeeper:
    """Housekeeping rounds, room and the journal-full state of the broker's journal (see the module docstring)."""

    def __init__(
        self,
        loop: Loop,
        bound_bytes: int,
        retention_seconds: float,
        rejects: RejectLog,
        *,
        on_full_change: Callable[[], None],
        on_round_done: Callable[[], None],
        backlogged: Callable[[], bool],
    ):
        """ON_FULL_CHANGE: the full state changed (report at once); ON_ROUND_DONE: a round may have
        changed the figures (a report is due sooner); BACKLOGGED: whether the ingress's last drain
        left messages queued (a burst is coming in)."""
        self.loop = loop
        self.bound_bytes = bound_bytes
        self.append_bound = bound_bytes  # less the WAL limit (open()): room to make room
        self.retention_seconds = retention_seconds
        self.rejects = rejects
        self.on_full_change = on_full_change
        self.on_round_done = on_round_done
        self.backlogged = backlogged
        self.journal: JournalWriter | None = None
        self.reserve: SpaceReserve | None = None
        self.state_dir = "."  # the journal's directory (open()): whose disk may fill
        self.page_size = 4096
        self.wal_limit = RESERVE_MIN_BYTES // 2  # set in open(): half the reserve
        self.wal_written = 0  # WAL bytes written (estimate) since the last checkpoint
        self.used_estimate = 0  # bytes: measured, plus the estimate of each append since
        self.extent = None  # the journal's rows as last measured (bus.journal_handle.Extent)
        self.retained = 0  # delivered rows kept for replay, as last measured
        self.full = False  # the journal-full state: events are refused
        self.disk_full = False
        self.full_retry_at = 0.0
        self.full_need = 0  # bytes the batch refused at the bound needed (0: full for another reason)
        self.full_log = RateLimited(REJECT_LOG_INTERVAL)  # "journal full" on support.events
        self.full_announced = False
        self.purge_log = RateLimited(REJECT_LOG_INTERVAL)  # a failing purge: every second on a full disk
        self.purged_at = time.monotonic()
        self.housekeeping_wait = HOUSEKEEPING_INTERVAL
        self._round: Timer | None = None  # the next housekeeping round (None: nothing to do until rows arrive)
        self._retry: Timer | None = None  # the next attempt to leave the full state

    def open(self, journal: JournalWriter, reserve_path: str) -> None:
        """Keep JOURNAL: measure it, set aside the reserve next to it and size the WAL after it."""
        self.journal = journal
        self.state_dir = os.path.dirname(reserve_path)
        self.page_size = journal.page_size
        self.measure()
        if journal.holds_events():
            self._schedule_round(0.0)  # rows from before a restart may be purgeable
        # Never more than a quarter of the room there is: a reserve that cannot be made at all
        # (a small or nearly full disk) would leave a full journal no way to drain.
        reserve_bytes = max(
            RESERVE_MIN_BYTES, min(RESERVE_MAX_BYTES, self.bound_bytes // 8, disk_room(reserve_path) // 4)
        )
        self.reserve = SpaceReserve(reserve_path, reserve_bytes)
        # Un-checkpointed WAL must fit in the reserve: on a full disk, copying it into the
        # database is the first step of draining. A batch (one transaction) stays within it too.
        self.wal_limit = reserve_bytes // 2
        journal.limit_wal(self.wal_limit)
        # Appends stop a WAL limit short of the bound: deleting retained rows to make room (and
        # the workers' cursor commits) write WAL too, and the journal must never pass the bound.
        self.append_bound = max(0, self.bound_bytes - self.wal_limit)
        if not self.reserve.ensure():
            support.warning(
                "cannot set aside %d bytes of disk next to the journal: the disk is nearly full", reserve_bytes
            )

    # ------------------------------------------------------------ deadlines on the loop

    def _schedule_round(self, wait: float) -> None:
        if self._round is not None:
            self._round.cancel()
        self._round = self.loop.call_later(wait, self.housekeeping)

    def _round_soon(self) -> None:
        """After a commit: a round within HOUSEKEEPING_INTERVAL, never pushed back by later commits
        (under a steady stream the rounds stay one a second)."""
        self.housekeeping_wait = HOUSEKEEPING_INTERVAL
        round_ = self._round
        if round_ is None or not round_.pending or round_.when > time.monotonic() + HOUSEKEEPING_INTERVAL:
            self._schedule_round(HOUSEKEEPING_INTERVAL)

    def _schedule_retry(self) -> None:
        self.full_retry_at = time.monotonic() + FULL_RETRY_INTERVAL
        if self._retry is not None:
            self._retry.cancel()
        self._retry = self.loop.call_at(self.full_retry_at, self.retry_full)

    # ------------------------------------------------------------ journal full

    def enter_full(self, why: str) -> None:
        self._schedule_retry()
        if not self.full:
            self.full = True
            if self.full_log.allow() is not None:
                self.full_announced = True
                support.error("Eventsink journal full: %s; new events are rejected until there is room again", why)
            self.on_full_change()

    def leave_full(self) -> None:
        self.full = False
        self.full_need = 0
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self.full_announced:
            self.full_announced = False
            support.warning("Eventsink journal has room again; accepting events")
        self.on_full_change()

    def retry_full(self) -> None:
        """While full, once per FULL_RETRY_INTERVAL: leave the state when below the resume mark and a write succeeds."""
        assert self.journal is not None and self.reserve is not None
        if not self.full or time.monotonic() < self.full_retry_at:
            return
        self._schedule_retry()
        if self.used_estimate >= self.resume_mark():
            return
        if self.disk_full and (free_bytes(self.state_dir) < self.reserve.size * 3 // 2 or not self.reserve.ensure()):
            return  # no room for the reserve and as much again: still full
        if self.journal.probe_write():
            self.disk_full = False
            self.leave_full()

    def resume_mark(self) -> float:
        """Below this a full journal accepts events again: below FULL_RESUME_RATIO of the bound
        (hysteresis: no alarm that flaps) and with room for a row as large as the one it refused.
        Not both as a sum: for a row nearly as large as the bound allows, that mark lay below an
        empty journal's size, and the journal stayed full for good."""
        need = max(self.full_need, TX_PAGES * self.page_size)
        return min(FULL_RESUME_RATIO * self.append_bound, self.append_bound - need)

    def refuse_if_never_fits(self, row: tuple[str, bytes]) -> bool:
        """ROW alone needs more than an append can ever have, even in an empty journal (it is
        written twice, WAL and database): reject it, only it, and True. The journal is not full:
        no alarm, and the events after it are taken (a journal-full state it entered could never
        be left, and making room for it would have deleted every retained row for nothing)."""
        size = len(row[0]) + len(row[1])
        if sum(self.estimate(1, size)) <= self.append_bound - EMPTY_JOURNAL_PAGES * self.page_size:
            return False
        self.rejects.reject(
            RejectReason.JOURNAL_FULL,
            f"an event of {size} bytes is more than the journal can ever hold "
            f"({self.bound_bytes} bytes, max_journal_mb)",
        )
        return True

    def estimate(self, count: int, size: int) -> tuple[int, int]:
        """Bytes COUNT rows of SIZE bytes (topics and payloads) add to the database, and to the WAL
        until the next checkpoint. Appended rows fill leaf pages in whole cells (three 1 kB rows
        take a 4 kB page), and the WAL takes whole pages plus the transaction's own."""
        page = self.page_size
        cell = size / count + ROW_OVERHEAD
        usable = page - LEAF_HEADER
        pages = math.ceil(count / int(usable // cell)) if cell <= usable else count * math.ceil(cell / (page - 4))
        return pages * page, (pages + TX_PAGES) * (page + WAL_FRAME_HEADER)

    def rows_that_fit(self, count: int, size: int) -> int:
        """Of COUNT rows of SIZE bytes, how many (the first ones) fit below the bound, by `estimate`
        (each row counted twice: in the WAL and in the database)."""
        room = self.append_bound - self.used_estimate
        grows, wal = self.estimate(count, size)
        keep = max(0, min(count, int(room * count // max(1, grows + wal))))
        while keep and sum(self.estimate(keep, size * keep // count)) > room:
            keep = keep - 1 if keep < 8 else keep * 7 // 8
        return keep

    # ------------------------------------------------------------ appending

    def commit(self, rows: Rows, size: int, publish: Callable[[Rows, list[int]], None]) -> None:
        """Journal ROWS (about SIZE bytes of topics and payloads), calling PUBLISH(rows, offsets) after
        each transaction. At the bound (after making room) the rows that fit go in a transaction of
        their own, then the rest is tried again, until not even one fits: only then is the journal
        full and the rest refused."""
        while rows:
            grows, wal = self.estimate(len(rows), size)
            keep = len(rows)
            if self.used_estimate + grows + wal > self.append_bound:
                if self.refuse_if_never_fits(rows[0]):  # before room_for: no retained row goes for it
                    size, rows = max(0, size - len(rows[0][0]) - len(rows[0][1])), rows[1:]
                    continue
                if not self.room_for(grows + wal):
                    keep = self.rows_that_fit(len(rows), size)  # in order: the later ones wait, or are refused
            if not keep:
                self.full_need = sum(self.estimate(1, size // len(rows)))  # one row: see resume_mark
                self.enter_full(
                    f"it holds {self.used_estimate} bytes, the bound is {self.bound_bytes} (max_journal_mb)"
                )
                self.rejects.reject(RejectReason.JOURNAL_FULL, FULL_MESSAGE, len(rows))
                return
            if keep < len(rows):
                grows, wal = self.estimate(keep, size * keep // len(rows))
            if not self._append(rows[:keep], grows, wal, publish):
                return
            if keep < len(rows):
                self.flush_wal()  # the next measure sees the rows once, not also in the WAL
            size = size * (len(rows) - keep) // len(rows)
            rows = rows[keep:]

    def _append(self, rows: Rows, grows: int, wal: int, publish: Callable[[Rows, list[int]], None]) -> bool:
        """Append ROWS in one transaction (GROWS bytes in the database, WAL in the WAL: estimates),
        then PUBLISH them; False when they were refused (the journal is full)."""
        assert self.journal is not None
        accepted_at = time.time()
        try:
            offsets = self.journal.append(rows, accepted_at)
        except JournalFull as exc:
            offsets = self.append_on_full_disk(rows, accepted_at, exc)
            if offsets is None:
                return False
        except Exception as exc:
            if not self.full:
                log.error("journal write failed: %s: %s", type(exc).__name__, exc)
            self.enter_full(f"the journal cannot be written ({type(exc).__name__}: {exc})")
            self.rejects.reject(
                RejectReason.JOURNAL_FULL, "the journal cannot be written; event not accepted", len(rows)
            )
            return False
        self._round_soon()
        publish(rows, offsets)
        self.used_estimate += grows + wal
        self.wal_written += wal
        if self.wal_written >= self.wal_limit:
            self.flush_wal()
        return True

    # ------------------------------------------------------------ purge and checkpoint

    def check_disk(self) -> None:
        """The disk may fill without an append failing (other files, the workers' cursor
        commits): below a quarter of the reserve free, release it and count the disk as full."""
        if self.disk_full:
            return
        room = free_bytes(self.state_dir)
        if room < self.reserve.size // 4:
            self.disk_full = True
            released = self.reserve.release()
            self.enter_full(f"the disk is full ({room} bytes free){'; reserve space released' if released else ''}")

    def defer_purge(self) -> bool:
        """True while a burst is coming in: deleting delivered rows (and handing their pages back) would
        compete with journaling it, and the pages are about to be reused anyway. Never longer than
        PURGE_MAX_DEFER, never on a journal that is full or holds half its bound."""
        return (
            self.backlogged()
            and time.monotonic() - self.purged_at < PURGE_MAX_DEFER
            and not self.full
            and not self.disk_full
            and self.used_estimate < PURGE_DEFER_MAX_RATIO * self.bound_bytes
        )

    def housekeeping(self) -> None:
        assert self.journal is not None
        self.check_disk()
        deleted = 0
        try:
            deleted += self.make_room_if_needed()
            if not self.defer_purge():
                self.purged_at = time.monotonic()
                deleted += self.journal.purge(max_rows=PURGE_MAX_ROWS, accepted_before=self.retention_cutoff())
        except Exception as exc:
            self.note_trouble("journal housekeeping failed", exc)
        # Even when the purge failed: on a full disk the WAL must be copied into the database
        # (with the reserve's room) and truncated before anything can be deleted.
        self.journal.checkpoint()
        self.wal_written = 0
        self.measure()
        if not self.full and self.used_estimate >= self.bound_bytes:
            self.enter_full(f"it holds {self.used_estimate} bytes, the bound is {self.bound_bytes} (max_journal_mb)")
        self.retry_full()
        if not self.full and not self.reserve.present():
            self.reserve.ensure()
        self.schedule_housekeeping(deleted)
        self.on_round_done()

    def note_trouble(self, what: str, exc: Exception) -> None:
        suppressed = self.purge_log.allow()
        if suppressed is not None:
            log.warning("%s: %s: %s%s", what, type(exc).__name__, exc, suppressed_note(suppressed))

    def measure(self) -> None:
        """The journal's real size and extent (what the next report tells)."""
        assert self.journal is not None
        try:
            self.used_estimate = self.journal.used_bytes()
            self.extent = self.journal.extent()
            self.retained = self.extent.retained
        except Exception as exc:
            self.extent = None
            log.warning("cannot measure the journal: %s: %s", type(exc).__name__, exc)

    def retention_cutoff(self) -> float | None:
        """Delivered rows accepted before this are due (None: every delivered row, retention 0)."""
        return None if self.retention_seconds <= 0 else time.time() - self.retention_seconds

    def make_room_if_needed(self) -> int:
        """At ROOM_MARK of the bound, while full, or on a full disk, delete retained rows (oldest first,
        whatever their age): down to ROOM_TARGET (or the resume mark), on a full disk by the reserve
        four times over."""
        assert self.journal is not None
        if self.disk_full:
            target = max(0, self.used_estimate - 4 * self.reserve.size)
        elif self.used_estimate >= ROOM_MARK * self.bound_bytes or self.full:
            target = int(min(ROOM_TARGET * self.bound_bytes, self.resume_mark()))  # full: enough to leave
        else:
            return 0
        return self.journal.make_room(target, max_rows=PURGE_MAX_ROWS)

    def room_for(self, need: int) -> bool:
        """An append of NEED bytes (WAL included) would pass the bound by the estimate: measure; if
        it really would, make room from retained rows, checkpoint and measure again. True when it fits."""
        assert self.journal is not None
        try:
            self.journal.checkpoint()  # the WAL counts: empty it before measuring
            self.wal_written = 0
            self.used_estimate = self.journal.used_bytes()
            if self.used_estimate + need <= self.append_bound:
                return True
            target = min(int(ROOM_TARGET * self.bound_bytes), self.append_bound - need)
            if self.journal.make_room(max(0, target), max_rows=PURGE_MAX_ROWS):
                self.journal.checkpoint()
                self.wal_written = 0
            self.measure()
        except Exception as exc:
            self.note_trouble("cannot make room in the journal", exc)
            return False
        return self.used_estimate + need <= self.append_bound

    def append_on_full_disk(self, rows: list, at: float, exc: Exception) -> list[int] | None:
        """An append failed on a full disk: give the reserve back, make room from retained rows and
        try once more; only then enter journal_full and reject ROWS (None)."""
        assert self.journal is not None
        self.disk_full = True
        released = self.reserve.release()  # room for the purge, the checkpoint and the workers' cursors
        try:
            target = max(0, self.journal.used_bytes() - 4 * self.reserve.size)
            if self.journal.make_room(target, max_rows=PURGE_MAX_ROWS):
                self.journal.checkpoint()
                offsets = self.journal.append(rows, at)
                self.disk_full = False  # the round re-creates the reserve, or finds the disk full again
                return offsets
        except Exception as again:
            self.note_trouble("cannot make room on the full disk", again)
        self.enter_full(f"the disk is full ({exc}){'; reserve space released' if released else ''}")
        self.rejects.reject(RejectReason.JOURNAL_FULL, FULL_MESSAGE, len(rows))
        return None

    def flush_wal(self) -> None:
        """About wal_limit bytes written since the last checkpoint: checkpoint now. Readers that
        keep reading defeat the automatic (passive) one, and the WAL counts in the bound."""
        assert self.journal is not None
        self.journal.checkpoint()
        self.wal_written = 0
        try:
            self.used_estimate = self.journal.used_bytes()
        except Exception as exc:
            self.note_trouble("cannot measure the journal", exc)

    def schedule_housekeeping(self, deleted: int) -> None:
        """The next round: soon while it makes progress or the journal is full, backing off while
        undelivered rows stay (a sink that does not deliver), at the oldest retained row's expiry,
        none while the journal holds no event."""
        extent = self.extent  # None: could not be read, look again later
        wait: float | None
        if self.full or self.disk_full or deleted or self.backlogged():
            self.housekeeping_wait = wait = HOUSEKEEPING_INTERVAL
        elif extent is None or extent.undelivered:
            self.housekeeping_wait = wait = min(2 * self.housekeeping_wait, HOUSEKEEPING_MAX_INTERVAL)
        else:
            wait = None  # retained rows only (or none): nothing to do before they expire or a commit
        expiry = self.expiry_wait()
        if expiry is not None:
            wait = expiry if wait is None else min(wait, expiry)
        if wait is not None:
            self._schedule_round(wait)
        elif self._round is not None:
            self._round.cancel()
            self._round = None

    def expiry_wait(self) -> float | None:
        """Seconds until the oldest retained row is due (with slack), None when none is retained."""
        extent = self.extent
        if extent is None or extent.oldest_at is None:
            return None
        slack = min(EXPIRY_SLACK_MAX, EXPIRY_SLACK_SHARE * self.retention_seconds)
        return max(EXPIRY_MIN_WAIT, extent.oldest_at + self.retention_seconds + slack - time.time())


def free_bytes(directory: str) -> int:
    """Bytes free on DIRECTORY's file system (plenty when it cannot be told)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return RESERVE_MAX_BYTES * 4
    return st.f_bavail * st.f_frsize


def disk_room(reserve_path: str) -> int:
    """Bytes free for the journal's directory, counting a reserve file already there."""
    try:
        held = os.path.getsize(reserve_path)
    except OSError:
        held = 0
    return free_bytes(os.path.dirname(reserve_path)) + held

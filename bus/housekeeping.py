"""The broker's care of its journal: the housekeeping rounds (purge what every
sink has, checkpoint the WAL, measure) and the journal-full state (entered on
the bound or a full disk, left once there is room and a write succeeds).

`JournalKeeping` is a base class of `bus.broker.Broker`, which owns the
attributes used here (journal, reserve, paths, bound_bytes, used_estimate,
journal_full, disk_full, backlogged, the housekeeping and retry deadlines) and
the loop that calls `housekeeping()` at `housekeeping_at` and `retry_full()`
at `full_retry_at`.

When rounds run: HOUSEKEEPING_INTERVAL after a commit (later commits do not
push it back, so a steady stream gets one round a second); after a round,
again in HOUSEKEEPING_INTERVAL while it deleted rows, a burst is coming in or
the journal is full, backing off (doubling, up to HOUSEKEEPING_MAX_INTERVAL)
while rows stay that no round can delete (a sink that does not deliver), and
not at all once the journal holds no event: an idle broker with an empty
journal never wakes for housekeeping.
"""

from __future__ import annotations

import logging
import os
import time

from common import logs
from common.logs import suppressed_note

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
REJECT_LOG_INTERVAL = 60.0  # s between two log lines for one reject reason or one kind of trouble


class JournalKeeping:
    """Housekeeping rounds and the journal-full state of the broker's journal."""

    # ------------------------------------------------------------ journal full

    def enter_full(self, why: str) -> None:
        self.full_retry_at = time.monotonic() + FULL_RETRY_INTERVAL
        if not self.journal_full:
            self.journal_full = True
            if self.full_log.allow() is not None:
                self.full_announced = True
                support.error("Eventsink journal full: %s; new events are rejected until there is room again", why)
            self.report()

    def leave_full(self) -> None:
        self.journal_full = False
        if self.full_announced:
            self.full_announced = False
            support.warning("Eventsink journal has room again; accepting events")
        self.report()

    def retry_full(self) -> None:
        """While full, once per FULL_RETRY_INTERVAL: leave the state when below the resume mark and a write succeeds."""
        assert self.journal is not None
        if not self.journal_full or time.monotonic() < self.full_retry_at:
            return
        self.full_retry_at = time.monotonic() + FULL_RETRY_INTERVAL
        if self.used_estimate >= FULL_RESUME_RATIO * self.bound_bytes:
            return
        if self.disk_full and (free_bytes(self.paths.state_dir) < self.reserve.size * 3 // 2
                               or not self.reserve.ensure()):
            return  # no room for the reserve and as much again: still full
        if self.journal.probe_write():
            self.disk_full = False
            self.leave_full()

    # ------------------------------------------------------------ purge and checkpoint

    def check_disk(self) -> None:
        """The disk may fill without an append failing (other files, the workers' cursor
        commits): below a quarter of the reserve free, release it and count the disk as full."""
        if self.disk_full:
            return
        room = free_bytes(self.paths.state_dir)
        if room < self.reserve.size // 4:
            self.disk_full = True
            released = self.reserve.release()
            self.enter_full(f"the disk is full ({room} bytes free){'; reserve space released' if released else ''}")

    def defer_purge(self) -> bool:
        """True while a burst is coming in: deleting delivered rows (and handing their pages back) would
        compete with journaling it, and the pages are about to be reused anyway. Never longer than
        PURGE_MAX_DEFER, never on a journal that is full or holds half its bound."""
        return (self.backlogged and time.monotonic() - self.purged_at < PURGE_MAX_DEFER and not self.journal_full
                and not self.disk_full and self.used_estimate < PURGE_DEFER_MAX_RATIO * self.bound_bytes)

    def housekeeping(self) -> None:
        assert self.journal is not None
        self.check_disk()
        deleted = 0
        try:
            if not self.defer_purge():
                self.purged_at = time.monotonic()
                deleted = self.journal.purge(max_rows=PURGE_MAX_ROWS)
        except Exception as exc:
            suppressed = self.purge_log.allow()
            if suppressed is not None:
                log.warning("journal housekeeping failed: %s: %s%s", type(exc).__name__, exc, suppressed_note(suppressed))
        # Even when the purge failed: on a full disk the WAL must be copied into the database
        # (with the reserve's room) and truncated before anything can be deleted.
        self.journal.checkpoint()
        try:
            self.used_estimate = self.journal.used_bytes()
        except Exception as exc:
            log.warning("cannot measure the journal: %s: %s", type(exc).__name__, exc)
        if not self.journal_full and self.used_estimate >= self.bound_bytes:
            self.enter_full(f"it holds {self.used_estimate} bytes, the bound is {self.bound_bytes} (max_journal_mb)")
        self.retry_full()
        if not self.journal_full and not self.reserve.present():
            self.reserve.ensure()
        self.schedule_housekeeping(deleted)

    def schedule_housekeeping(self, deleted: int) -> None:
        """The next round: soon while it makes progress or the journal is full, backing off while
        rows stay (a sink that does not deliver), none while the journal holds no event."""
        assert self.journal is not None
        try:
            holds_events = self.journal.holds_events()
        except Exception:
            holds_events = True  # cannot tell: look again later
        if self.journal_full or self.disk_full or deleted or self.backlogged:
            self.housekeeping_wait = HOUSEKEEPING_INTERVAL
        elif holds_events:
            self.housekeeping_wait = min(2 * self.housekeeping_wait, HOUSEKEEPING_MAX_INTERVAL)
        else:
            self.housekeeping_at = None  # the next commit schedules a round
            return
        self.housekeeping_at = time.monotonic() + self.housekeeping_wait


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

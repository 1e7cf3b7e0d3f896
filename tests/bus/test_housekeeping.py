"""The broker's JournalKeeper (bus/housekeeping.py). Without a journal: it defers purging delivered
rows only while a burst is coming in, briefly, and never on a full or half-full journal (guards
for the hot-path changes the bench drove, see tests/bench). On a real journal and a real loop:
the deadlines it registers (the round, the full state's retry) and what it refuses."""

from __future__ import annotations

import time

import pytest

from bus import housekeeping
from bus.housekeeping import HOUSEKEEPING_INTERVAL, JournalKeeper
from bus.journal_writer import JournalWriter
from bus.validate import RejectLog
from common.loop import Loop
from common.vocabulary import RejectReason


@pytest.fixture
def loop():
    loop = Loop()
    yield loop
    loop.close()


class Keeper(JournalKeeper):
    """A keeper of a 1 MiB journal with no journal opened: defer_purge needs none."""

    def __init__(self, loop: Loop):
        self.burst = True
        super().__init__(
            loop,
            1024 * 1024,
            24 * 3600,
            RejectLog(),
            on_full_change=lambda: None,
            on_round_done=lambda: None,
            backlogged=lambda: self.burst,
        )
        self.purged_at = time.monotonic()


def test_purge_waits_while_a_burst_comes_in(loop):
    assert Keeper(loop).defer_purge()


def test_purge_runs_when_the_queue_ran_dry(loop):
    b = Keeper(loop)
    b.burst = False
    assert not b.defer_purge()


def test_purge_waits_at_most_the_bound(loop):
    b = Keeper(loop)
    b.purged_at = time.monotonic() - housekeeping.PURGE_MAX_DEFER - 0.1
    assert not b.defer_purge()


def test_purge_never_waits_on_a_full_disk_or_journal_or_a_half_full_one(loop):
    for change in ({"full": True}, {"disk_full": True}, {"used_estimate": 600 * 1024}):
        b = Keeper(loop)
        for name, value in change.items():
            setattr(b, name, value)
        assert not b.defer_purge(), change


class Kept:
    """A JournalKeeper on a real journal and a real loop, its callbacks recorded."""

    def __init__(self, tmp_path, loop: Loop, bound_bytes: int = 1024 * 1024):
        self.loop = loop
        self.rejects = RejectLog()
        self.full_changes: list[bool] = []
        self.published: list[list[int]] = []
        self.keeper = JournalKeeper(
            loop,
            bound_bytes,
            24 * 3600,
            self.rejects,
            on_full_change=lambda: self.full_changes.append(self.keeper.full),
            on_round_done=lambda: None,
            backlogged=lambda: False,
        )
        self.journal = JournalWriter(str(tmp_path / "state" / "journal.sqlite3"))
        self.keeper.open(self.journal, str(tmp_path / "state" / "journal.reserve"))

    def commit(self, rows) -> None:
        self.keeper.commit(
            rows, sum(len(t) + len(p) for t, p in rows), lambda rows, offsets: self.published.append(offsets)
        )

    def close(self) -> None:
        self.journal.close()


@pytest.fixture
def kept(tmp_path, loop):
    k = Kept(tmp_path, loop)
    yield k
    k.close()


def test_an_empty_journal_registers_no_timer(kept):
    assert kept.loop.next_timer() is None  # an idle broker with nothing journaled never wakes for it


def test_a_commit_registers_one_round_that_later_commits_do_not_push_back(kept):
    before = time.monotonic()
    kept.commit([("conference_started", b"{}")])
    first = kept.loop.next_timer()
    assert first is not None and before + HOUSEKEEPING_INTERVAL <= first <= time.monotonic() + HOUSEKEEPING_INTERVAL
    kept.commit([("conference_updated", b"{}")])
    assert kept.loop.next_timer() == first
    assert kept.published == [[1], [2]]


def test_the_round_runs_on_the_loop_and_an_emptied_journal_stops_the_rounds(kept):
    kept.commit([("conference_started", b"{}")])  # no cursor row: delivered, and retention 24 h keeps it
    kept.keeper.retention_seconds = 0  # every delivered row is due
    deadline = time.monotonic() + 5
    while kept.journal.holds_events():
        assert time.monotonic() < deadline, "the round never ran"
        kept.loop.run_once(max_wait=0.5)
    # One more round (it deleted rows: look again soon) finds nothing, and registers none after it.
    assert kept.loop.next_timer() is not None
    while kept.loop.next_timer() is not None:
        assert time.monotonic() < deadline, "the rounds never stopped on an empty journal"
        kept.loop.run_once(max_wait=0.5)
    assert not kept.journal.holds_events()


def test_an_event_that_can_never_fit_is_refused_without_the_full_state(kept):
    kept.commit([("conference_started", b"x" * (2 * 1024 * 1024))])
    assert kept.rejects.counts == {RejectReason.JOURNAL_FULL: 1}
    assert not kept.keeper.full and kept.full_changes == [] and kept.published == []


def test_the_full_state_registers_its_retry_and_leaving_it_cancels_it(kept):
    kept.keeper.enter_full("a test")
    assert kept.keeper.full and kept.full_changes == [True]
    retry = kept.loop.next_timer()
    assert retry == pytest.approx(time.monotonic() + housekeeping.FULL_RETRY_INTERVAL, abs=0.5)
    deadline = time.monotonic() + 5
    while kept.keeper.full:  # a nearly empty journal: the retry's probe write succeeds
        assert time.monotonic() < deadline, "the retry never left the full state"
        kept.loop.run_once(max_wait=0.5)
    assert kept.full_changes == [True, False] and kept.loop.next_timer() is None

"""The broker's JournalKeeper (bus/housekeeping.py) without a journal: it defers purging delivered
rows only while a burst is coming in, briefly, and never on a full or half-full journal (guards
for the hot-path changes the bench drove, see tests/bench)."""

from __future__ import annotations

import time

import pytest

from common.loop import Loop
from bus import housekeeping
from bus.housekeeping import JournalKeeper
from bus.validate import RejectLog


@pytest.fixture
def loop():
    loop = Loop()
    yield loop
    loop.close()


class Keeper(JournalKeeper):
    """A keeper of a 1 MiB journal with no journal opened: defer_purge needs none."""

    def __init__(self, loop: Loop):
        self.burst = True
        super().__init__(loop, 1024 * 1024, 24 * 3600, RejectLog(), on_full_change=lambda: None,
                         on_round_done=lambda: None, backlogged=lambda: self.burst)
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

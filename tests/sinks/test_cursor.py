"""CursorTracker: the low-water mark over journal offsets."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sinks.cursor import CursorTracker


def test_cursor_waits_for_the_lowest_undone_offset():
    t = CursorTracker(10)
    for o in (11, 12, 13, 14):
        t.add(o)
    assert t.cursor == 10 and t.undone == 4
    t.done(12)
    t.done(13)
    assert t.cursor == 10  # 11 is held or in flight
    t.done(11)
    assert t.cursor == 13 and t.undone == 1
    t.done(14)
    assert t.cursor == 14 and t.undone == 0


def test_gaps_in_the_journal_count_as_done():
    t = CursorTracker(0)
    t.add(5)
    assert t.cursor == 4
    t.add(9)
    t.done(5)
    assert t.cursor == 8
    t.done(9)
    assert t.cursor == 9


def test_repeated_and_unknown_offsets_are_ignored():
    t = CursorTracker(3)
    t.add(4)
    t.add(5)
    t.done(4)
    t.done(4)
    t.done(2)
    t.done(77)
    assert t.cursor == 4 and t.undone == 1


def test_offsets_must_ascend():
    t = CursorTracker(3)
    t.add(4)
    with pytest.raises(ValueError):
        t.add(4)
    with pytest.raises(ValueError):
        t.add(2)


def test_memory_is_bounded_by_what_is_not_passed():
    t = CursorTracker(0)
    for o in range(1, 100_001):
        t.add(o)
        t.done(o)
    assert t.cursor == 100_000 and t.undone == 0
    assert len(t._order) == 0 and len(t._pending) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=60), st.randoms(use_true_random=False))
def test_cursor_is_the_low_water_mark(steps, rnd):
    offsets, o = [], 0
    for step in steps:
        o += step
        offsets.append(o)
    t = CursorTracker(0)
    for off in offsets:
        t.add(off)
    order = offsets[:]
    rnd.shuffle(order)
    finished = set()
    for off in order:
        t.done(off)
        finished.add(off)
        not_done = [x for x in offsets if x not in finished]
        expected = (not_done[0] - 1) if not_done else offsets[-1]
        assert t.cursor == expected
        # never past an undone offset
        assert all(t.cursor < x for x in not_done)


def test_undone_bytes_follow_the_sizes_given():
    t = CursorTracker(0)
    t.add(1, 100)
    t.add(2, 50)
    t.done(2)
    assert t.undone_bytes == 100
    t.done(1)
    t.done(1)
    assert t.undone_bytes == 0 and t.undone == 0

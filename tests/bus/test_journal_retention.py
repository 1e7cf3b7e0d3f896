"""The journal's acceptance time, its upgrade from an older journal, retention, making room,
the retained count, the replay window and set_cursor: real SQLite files."""

from __future__ import annotations

import os
import random
import sqlite3
import time

import pytest

from bus.journal import Journal, JournalCorrupt, ReplayWindow
from bus.journal_reader import JournalReader
from tests.helpers import short_tmpdir

PAYLOAD = b'{"event":"conference_updated","time":1700000000.0,"data":{"name":"meet","fid":"x-12345"}}'


@pytest.fixture
def journal_path():
    with short_tmpdir() as d:
        yield os.path.join(d, "state", "journal.sqlite3")


def stored_times(path: str) -> list[float]:
    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute('SELECT accepted_at FROM events ORDER BY "offset"')]
    finally:
        db.close()


def offsets(path: str) -> list[int]:
    with JournalReader(path, "probe") as r:
        return [row[0] for row in r.read(0, 10**6)]


def fill(j: Journal, times: list[float], per_time: int = 1) -> None:
    for t in times:
        j.append([("conference_updated", PAYLOAD)] * per_time, accepted_at=t)


# ------------------------------------------------------------------ acceptance time


def test_append_stores_one_time_per_batch_and_never_goes_back(journal_path):
    with Journal(journal_path) as j:
        before = time.time()
        j.append([("a", b"1"), ("b", b"2")])
        after = time.time()
        j.append([("c", b"3")], accepted_at=after + 100)
        j.append([("d", b"4")], accepted_at=after + 50)  # a clock stepped back: clamped
        times = stored_times(journal_path)
        assert times[0] == times[1] and before <= times[0] <= after
        assert times[2:] == [after + 100, after + 100]
        with JournalReader(journal_path, "cdr") as r:
            assert r.accepted_at(3) == after + 100
            assert r.accepted_at(99) is None
    with Journal(journal_path) as j:  # the clamp survives a reopen
        j.append([("e", b"5")], accepted_at=1.0)
    assert stored_times(journal_path)[-1] == after + 100


def make_old_journal(path: str, rows: int, payload: bytes = PAYLOAD) -> str:
    """A journal as the version before accepted_at wrote it: three columns, WAL, a cursor."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA auto_vacuum = INCREMENTAL")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute(
        'CREATE TABLE events("offset" INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL)'
    )
    db.execute('CREATE TABLE cursors(sink TEXT PRIMARY KEY, "offset" INTEGER NOT NULL)')
    db.execute("INSERT INTO meta VALUES ('epoch', '0123456789abcdef')")
    db.execute("BEGIN")
    db.executemany("INSERT INTO events(topic, payload) VALUES (?, ?)", [("conference_updated", payload)] * rows)
    db.execute("COMMIT")
    db.execute("INSERT INTO cursors VALUES ('cdr', ?)", (rows // 2,))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return "0123456789abcdef"


def test_an_older_journal_is_upgraded_on_open_and_keeps_everything(journal_path):
    epoch = make_old_journal(journal_path, 1000, payload=os.urandom(1000))
    with pytest.raises(JournalCorrupt):  # a worker never upgrades: the supervisor's Journal does
        JournalReader(journal_path, "cdr")
    before = time.time()
    with Journal(journal_path, verify=True) as j:  # what the supervisor opens at start
        after = time.time()
        # ALTER TABLE ... DEFAULT rewrote no row: the WAL holds the schema and index, not 1 MB of rows
        assert os.path.getsize(journal_path + "-wal") < 200_000
        assert j.epoch == epoch and j.head() == 1000 and j.cursors() == {"cdr": 500}
        columns = [r[1] for r in j._db.execute("PRAGMA table_info(events)")]
        assert columns == ["offset", "topic", "payload", "accepted_at"]
        assert "events_accepted_at" in [r[1] for r in j._db.execute("PRAGMA index_list(events)")]
        assert j.retained() == 500
        assert j.append([("conference_ended", b"{}")]) == [1001]
    times = stored_times(journal_path)
    assert len(times) == 1001 and all(before <= t <= after for t in times[:1000])  # the upgrade's time
    assert times[1000] >= times[999]
    with Journal(journal_path) as j, JournalReader(journal_path, "cdr") as r:  # opens again as it is
        assert r.cursor() == 500 and len(r.read(0, 2000)) == 1001
        assert j.dead_letter_counts() == {}
        window = j.replay_window("cdr", before)
        assert window == ReplayWindow(500, 1, times[0])


# ------------------------------------------------------------------ retention and room


def test_purge_with_retention_keeps_young_delivered_rows(journal_path):
    with Journal(journal_path) as j:
        fill(j, [100.0, 200.0, 300.0], per_time=3)  # offsets 1-3 at 100, 4-6 at 200, 7-9 at 300
        j.ensure_cursor("cdr")
        j.set_cursor("cdr", 8)  # row 9 is not delivered
        assert j.purge(accepted_before=150.0) == 3
        assert offsets(journal_path)[0] == 4
        assert j.purge(accepted_before=150.0) == 0
        assert j.purge(accepted_before=300.0) == 3  # accepted exactly at 300: young, kept
        assert j.purge(accepted_before=10**10) == 2  # 7 and 8; 9 is undelivered
        assert offsets(journal_path) == [9]
        assert j.retained() == 0


def test_retained_counts_delivered_rows_held(journal_path):
    with Journal(journal_path) as j:
        assert j.retained() == 0
        fill(j, [float(t) for t in range(1, 11)])
        assert j.retained() == 10  # no cursor row: every row counts as delivered
        assert j.extent().undelivered == 0
        j.ensure_cursor("a")
        j.set_cursor("a", 4)
        with JournalReader(journal_path, "b") as b:
            b.commit_cursor(7)
        assert j.retained() == 4 and j.extent().undelivered == 6
        j.purge(accepted_before=3.0)  # rows 1 and 2
        assert j.retained() == 2
        assert j.extent().oldest_at == 3.0
        j.set_cursor("a", 2)  # below every row held: none delivered
        assert j.retained() == 0 and j.extent().oldest_at is None


def test_make_room_deletes_oldest_delivered_rows_only_until_the_target(journal_path):
    with Journal(journal_path) as j:
        j.limit_wal(256 * 1024)
        for t in range(40):
            j.append([("t", os.urandom(1000))] * 100, accepted_at=float(t))
        j.ensure_cursor("cdr")
        j.set_cursor("cdr", 3000)  # 3000 delivered (retained, young), 1000 not
        j.checkpoint()
        full = j.used_bytes()
        assert j.make_room(full + 1) == 0  # already below: nothing goes
        target = full - 1_000_000
        deleted = j.make_room(target)
        assert j.used_bytes() <= target
        held = offsets(journal_path)
        assert held == list(range(deleted + 1, 4001))  # the oldest went, a prefix
        assert 900 <= deleted < 3000  # about 1 MB of 1 kB rows, not everything
        assert j.make_room(0) == 3000 - deleted  # never an undelivered row
        assert offsets(journal_path) == list(range(3001, 4001))


def test_a_purge_writes_the_wal_in_chunks_of_its_limit(journal_path):
    limit = 256 * 1024
    with Journal(journal_path) as j:
        j.limit_wal(limit)
        for t in range(40):
            j.append([("t", os.urandom(1000))] * 100, accepted_at=float(t))
        j.checkpoint()
        seen = {"deletes": 0, "wal_peak": 0}

        def trace(sql: str) -> None:  # called before each statement: the WAL as the last one left it
            seen["wal_peak"] = max(seen["wal_peak"], os.path.getsize(journal_path + "-wal"))
            seen["deletes"] += sql.startswith("DELETE FROM events")

        j._db.set_trace_callback(trace)
        assert j.purge() == 4000  # 4 MB of rows
        j._db.set_trace_callback(None)
        assert seen["deletes"] >= 8  # one transaction would have written 4 MB of WAL
        assert seen["wal_peak"] <= 2 * limit
        assert os.path.getsize(journal_path + "-wal") <= limit


# ------------------------------------------------------------------ replay and cursors


def test_replay_window_counts_retained_rows_since_a_time(journal_path):
    with Journal(journal_path) as j:
        assert j.replay_window("cdr", 0.0) == ReplayWindow(0, None, None)
        fill(j, [10.0, 20.0, 30.0, 40.0], per_time=5)  # 1-5 at 10, 6-10 at 20, 11-15 at 30, 16-20 at 40
        j.ensure_cursor("cdr")
        j.set_cursor("cdr", 17)
        assert j.replay_window("cdr", 20.0) == ReplayWindow(12, 6, 10.0)
        assert j.replay_window("cdr", 0.0) == ReplayWindow(17, 1, 10.0)
        assert j.replay_window("cdr", 25.0) == ReplayWindow(7, 11, 10.0)
        assert j.replay_window("cdr", 41.0) == ReplayWindow(0, None, 10.0)
        assert j.replay_window("cdr", 20.0, cursor=8) == ReplayWindow(3, 6, 10.0)
        assert j.replay_window("cdr", 0.0, cursor=10**6) == ReplayWindow(20, 1, 10.0)  # at most the head
        assert j.replay_window("unknown", 0.0) == ReplayWindow(0, None, None)  # no cursor row: nothing delivered
        j.purge(accepted_before=30.0)
        assert j.replay_window("cdr", 0.0) == ReplayWindow(7, 11, 30.0)


def test_replay_window_agrees_with_counting_rows_and_uses_the_index(journal_path):
    rng = random.Random(7)
    with Journal(journal_path) as j:
        t = 1_700_000_000.0
        for _ in range(200):  # 100,000 rows, times rising irregularly
            t += rng.choice([0.0, 0.5, 3.0])
            j.append([("t", b"x")] * 500, accepted_at=t)
        j.ensure_cursor("cdr")  # at the head: every row delivered
        assert j.purge(max_rows=12_345) == 12_345  # the rows held start above 1
        db = j._db
        plan = db.execute(
            'EXPLAIN QUERY PLAN SELECT "offset" FROM events WHERE accepted_at >= ? '
            'ORDER BY accepted_at, "offset" LIMIT 1',
            (t,),
        ).fetchall()
        assert "events_accepted_at" in str(plan)
        head = j.head()
        for _ in range(30):
            cursor = rng.randint(0, head)
            since = rng.uniform(1_700_000_000.0, t + 1)
            j.set_cursor("cdr", cursor)
            got = j.replay_window("cdr", since)
            count, first = db.execute(
                'SELECT COUNT(*), MIN("offset") FROM events WHERE "offset" <= ? AND accepted_at >= ?', (cursor, since)
            ).fetchone()
            oldest = db.execute(
                'SELECT accepted_at FROM events WHERE "offset" = (SELECT MIN("offset") FROM events) AND "offset" <= ?',
                (cursor,),
            ).fetchone()
            assert got == ReplayWindow(count, first, oldest[0] if oldest else None), (cursor, since)


def test_set_cursor_is_exact_and_commit_cursor_keeps_its_max(journal_path):
    with Journal(journal_path) as j:
        fill(j, [1.0] * 10)
        j.ensure_cursor("cdr")
        assert j.cursors() == {"cdr": 10}
        j.set_cursor("cdr", 3)
        assert j.cursors() == {"cdr": 3}
        j.set_cursor("new", 5)  # creates the row
        with JournalReader(journal_path, "cdr") as r:
            r.commit_cursor(2)
            assert r.cursor() == 3
            r.commit_cursor(6)
            assert r.cursor() == 6
        for bad in (-1, 11):
            with pytest.raises(ValueError):
                j.set_cursor("cdr", bad)
        assert j.cursors() == {"cdr": 6, "new": 5}


def test_a_rewound_cursor_keeps_its_rows_from_purge_and_make_room(journal_path):
    with Journal(journal_path) as j:
        fill(j, [1.0] * 10)
        j.ensure_cursor("cdr")  # every row delivered ...
        j.set_cursor("cdr", 3)  # ... until a replay rewinds the cursor
        assert j.purge(accepted_before=10**10) == 3
        assert j.make_room(0) == 0
        assert offsets(journal_path) == list(range(4, 11))
        assert j.replay_window("cdr", 0.0) == ReplayWindow(0, None, None)
        with JournalReader(journal_path, "cdr") as r:
            assert [row[0] for row in r.read(r.cursor(), 100)] == list(range(4, 11))  # the worker re-reads them


def test_a_cursor_shadow_vouches_for_rows_the_worker_has_not_committed(journal_path):
    """A worker commits its cursor about once a second but marks each acknowledgement in its
    shadow at once: those rows are delivered (retained) for make_room, purge and the extent."""
    from bus.shadow_marks import shadow_path
    from sinks.shadow import CursorShadow  # the worker's writer (bus/ never imports sinks/)

    with Journal(journal_path) as j:
        fill(j, [1.0] * 10)
        j.ensure_cursor("cdr")
        j.set_cursor("cdr", 2)  # committed: 2 ...
        shadow = CursorShadow(shadow_path(os.path.dirname(journal_path), "cdr"), j.epoch)
        try:
            assert shadow.resume(2) == (2, frozenset())
            shadow.moved(7)  # ... acknowledged: up to 7
            assert j.extent().delivered == 7 and j.retained() == 7
            assert j.make_room(0) == 7
            assert offsets(journal_path) == list(range(8, 11))
            j.set_cursor("cdr", 8)  # moved by someone else (the shadow's base is 2): the mark is void
            shadow.moved(10)
            assert j.extent().delivered == 8 and j.make_room(0) == 1
        finally:
            shadow.close()
        other = CursorShadow(shadow_path(os.path.dirname(journal_path), "cdr"), "f" * 16)  # another journal's
        try:
            other.resume(8)
            other.moved(10)
            assert j.extent().delivered == 8 and j.make_room(0) == 0
        finally:
            other.close()
        assert offsets(journal_path) == [9, 10]

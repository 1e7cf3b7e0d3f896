"""The journal: offsets, epoch, cursors, purge, reopen, corruption and a full database."""

from __future__ import annotations

import os
import sqlite3

import pytest

from bus.journal import Journal, JournalCorrupt, JournalFull, SpaceReserve
from bus.journal_reader import JournalReader
from tests.helpers import short_tmpdir


@pytest.fixture
def journal_path():
    with short_tmpdir() as d:
        yield os.path.join(d, "state", "journal.sqlite3")


def test_create_sets_up_dir_schema_and_pragmas(journal_path):
    with Journal(journal_path) as j:
        assert len(j.epoch) == 16 and int(j.epoch, 16) >= 0
        assert j.head() == 0
        assert os.stat(os.path.dirname(journal_path)).st_mode & 0o777 == 0o750
        assert j._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert j._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental


def test_append_assigns_consecutive_offsets_and_reader_sees_them(journal_path):
    with Journal(journal_path) as j:
        assert j.append([]) == []
        assert j.append([("conference_started", b'{"a":1}'), ("participant_connected", b"\x00\xffraw")]) == [1, 2]
        assert j.append([("conference_ended", b"{}")]) == [3]
        assert j.head() == 3
        with JournalReader(journal_path, "cdr") as r:
            assert r.epoch == j.epoch
            assert r.head() == 3
            assert r.read(0, 10) == [
                (1, "conference_started", b'{"a":1}'),
                (2, "participant_connected", b"\x00\xffraw"),
                (3, "conference_ended", b"{}"),
            ]
            assert [row[0] for row in r.read(1, 1)] == [2]
            assert r.read(3, 10) == []
            assert isinstance(r.read(0, 1)[0][2], bytes)


def test_head_and_epoch_survive_purge_and_reopen(journal_path):
    j = Journal(journal_path)
    epoch = j.epoch
    j.append([("a", b"1"), ("b", b"2"), ("c", b"3")])
    assert j.purge() == 3  # no cursor rows: everything goes
    assert j.head() == 3
    j.close()
    j = Journal(journal_path)
    assert j.epoch == epoch
    assert j.head() == 3
    assert j.append([("d", b"4")]) == [4]  # offsets never reused
    j.close()


def test_cursors_ensure_commit_drop(journal_path):
    with Journal(journal_path) as j:
        j.append([("a", b"1"), ("b", b"2")])
        assert j.ensure_cursor("cdr") == 2  # new sink starts at the head
        j.append([("c", b"3")])
        assert j.ensure_cursor("cdr") == 2  # existing row kept
        assert j.ensure_cursor("siem") == 3
        with JournalReader(journal_path, "cdr") as r:
            assert r.cursor() == 2
            r.commit_cursor(3)
            r.commit_cursor(1)  # never backwards
            assert r.cursor() == 3
        with JournalReader(journal_path, "new") as r:
            assert r.cursor() == 0
        assert j.cursors() == {"cdr": 3, "siem": 3}
        j.drop_cursors_except(["siem"])
        assert j.cursors() == {"siem": 3}
        j.drop_cursors_except([])
        assert j.cursors() == {}


def test_purge_keeps_events_above_the_lowest_cursor(journal_path):
    with Journal(journal_path) as j:
        j.append([(f"t{i}", b"x") for i in range(10)])
        j.ensure_cursor("fast")
        with JournalReader(journal_path, "slow") as slow:
            slow.commit_cursor(4)
            assert j.purge() == 4
            assert [row[0] for row in slow.read(0, 100)] == [5, 6, 7, 8, 9, 10]
            assert j.purge() == 0
            slow.commit_cursor(7)
            assert j.purge(max_rows=2) == 2
            assert [row[0] for row in slow.read(0, 100)][0] == 7
            assert j.purge() == 1
            assert [row[0] for row in slow.read(0, 100)] == [8, 9, 10]


def test_purge_gives_space_back(journal_path):
    with Journal(journal_path) as j:
        for _ in range(20):
            j.append([("t", os.urandom(1000)) for _ in range(100)])
        j.checkpoint()
        full = j.used_bytes()
        assert full > 2_000_000
        file_before = j.file_bytes()
        assert j.purge() == 2000
        j.checkpoint()
        assert j.used_bytes() < full / 2
        assert j.file_bytes() < file_before / 2  # incremental vacuum really hands pages back


def test_checkpoint_truncates_wal_and_never_raises_with_reader_open(journal_path):
    with Journal(journal_path) as j, JournalReader(journal_path, "cdr") as r:
        j.append([("t", b"x" * 1000) for _ in range(500)])
        assert os.path.getsize(journal_path + "-wal") > 0
        assert len(r.read(0, 1000)) == 500  # reader used, but holds no transaction
        j.checkpoint()
        assert os.path.getsize(journal_path + "-wal") == 0


def test_reader_on_missing_journal_fails_clearly(journal_path):
    with pytest.raises(FileNotFoundError):
        JournalReader(journal_path, "cdr")
    assert not os.path.exists(journal_path)


@pytest.mark.parametrize("content", [b"garbage" * 2000, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_garbled_file_raises_journal_corrupt(journal_path, content):
    os.makedirs(os.path.dirname(journal_path))
    with open(journal_path, "wb") as fh:
        fh.write(content)
    with pytest.raises(JournalCorrupt) as err:
        Journal(journal_path)
    assert "\n" not in str(err.value)
    with pytest.raises(JournalCorrupt):
        JournalReader(journal_path, "cdr")


def test_foreign_sqlite_schema_is_corrupt(journal_path):
    os.makedirs(os.path.dirname(journal_path))
    db = sqlite3.connect(journal_path)
    db.execute("CREATE TABLE events(id INTEGER PRIMARY KEY, body TEXT)")
    db.commit()
    db.close()
    with pytest.raises(JournalCorrupt):
        Journal(journal_path)


def test_full_database_raises_journal_full_and_rolls_back(journal_path):
    with Journal(journal_path) as j:
        assert j.append([("a", b"1")]) == [1]
        pages = j._db.execute("PRAGMA page_count").fetchone()[0]
        j._db.execute(f"PRAGMA max_page_count = {pages + 2}")
        with pytest.raises(JournalFull):
            j.append([("big", os.urandom(4000)) for _ in range(50)])
        assert j.head() == 1  # nothing half-written
        with JournalReader(journal_path, "cdr") as r:
            assert [row[0] for row in r.read(0, 100)] == [1]
        j._db.execute("PRAGMA max_page_count = 1073741823")
        assert j.append([("b", b"2")]) == [2]


def test_space_reserve_ensure_and_release(journal_path):
    os.makedirs(os.path.dirname(journal_path))
    reserve = SpaceReserve(journal_path + ".reserve", 100_000)
    assert not reserve.present()
    assert reserve.ensure() and reserve.present()
    assert os.path.getsize(reserve.path) == 100_000
    assert reserve.ensure()  # idempotent
    assert reserve.release() and not os.path.exists(reserve.path)
    assert not reserve.release()


@pytest.mark.root
def test_real_disk_full_then_drained_with_the_reserve(tiny_fs):
    path = os.path.join(tiny_fs, "state", "journal.sqlite3")
    with Journal(path) as j:
        reserve = SpaceReserve(os.path.join(tiny_fs, "state", "journal.reserve"), 128 * 1024)
        assert reserve.ensure()
        j.ensure_cursor("cdr")
        appended = 0
        with pytest.raises(JournalFull):
            for _ in range(1000):  # bounded: 10 MB is far beyond the 1 MiB file system
                j.append([("t", os.urandom(2000)) for _ in range(5)])
                appended += 5
                j.checkpoint()  # as the broker does every second
        assert appended > 0 and j.head() == appended  # the failed batch left nothing behind
        assert reserve.release()
        with JournalReader(path, "cdr") as reader:
            assert len(reader.read(0, 10_000)) == appended
            reader.commit_cursor(j.head())  # a worker can still move its cursor...
        assert j.purge() == appended  # ...and the journal can drain
        j.checkpoint()
        assert j.file_bytes() < 100_000
        assert reserve.ensure() and j.probe_write()
        assert j.append([("t", b"after")]) == [appended + 1]

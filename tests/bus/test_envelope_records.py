"""Bulk envelope records in the journal (bus/envelope_records.py): packing, a worker's reads and
writes, the purge that takes a record with its last event, sink removal, the upgrade of a journal
written before the table existed. Real SQLite files."""

from __future__ import annotations

import os
import sqlite3
import tempfile

import pytest

from bus.envelope_records import pack, unpack
from bus.journal import Journal, JournalCorrupt
from bus.journal_reader import JournalReader


@pytest.fixture
def journal_path():
    with tempfile.TemporaryDirectory(prefix="esa-env-") as d:
        yield os.path.join(d, "state", "journal.sqlite3")


def filled(path: str, rows: int) -> Journal:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    j = Journal(path)
    j.append([("conference_updated", b'{"event":"conference_updated","time":1,"data":{"name":"c"}}')] * rows)
    return j


def test_members_pack_in_order_with_merged_offsets_negative():
    items = [(7, ()), (3, (9,)), (5, ())]
    low, high, blob = pack(items)
    assert (low, high) == (3, 9) and len(blob) == 8 * 4
    assert unpack(blob) == items


def test_a_worker_records_and_reads_back_its_own_envelopes_only(journal_path):
    with filled(journal_path, 20), JournalReader(journal_path, "cdr") as r, JournalReader(journal_path, "siem") as s:
        r.record_envelopes([[(1, ()), (2, ())], [(4, ()), (3, (6,))], [(8, ()), (9, ())]])
        s.record_envelopes([[(1, ()), (2, ()), (3, ())]])
        assert r.envelope_horizon(0) == 8 and r.envelope_horizon(9) == 0
        assert r.envelopes_beginning(0, 3) == [(1, [(1, ()), (2, ())]), (3, [(4, ()), (3, (6,))])]
        assert r.envelopes_beginning(3, 100) == [(8, [(8, ()), (9, ())])]
        # cursor 4: the record beginning at 3 still holds 6 above it
        assert r.envelopes_straddling(4) == [(3, [(4, ()), (3, (6,))])]
        assert s.envelopes_beginning(0, 100) == [(1, [(1, ()), (2, ()), (3, ())])]


def test_a_split_replaces_the_refused_envelope_by_its_halves_in_one_transaction(journal_path):
    with filled(journal_path, 10), JournalReader(journal_path, "cdr") as r:
        r.record_envelopes([[(o, ()) for o in range(1, 9)]])
        r.record_envelopes([[(o, ()) for o in range(1, 5)], [(o, ()) for o in range(5, 9)]], replacing=1)
        assert [(low, len(items)) for low, items in r.envelopes_beginning(0, 100)] == [(1, 4), (5, 4)]


def test_the_purge_takes_a_record_with_its_last_event_and_sink_removal_takes_them_all(journal_path):
    with filled(journal_path, 10) as j, JournalReader(journal_path, "cdr") as r:
        r.record_envelopes([[(1, ()), (2, ())], [(3, ()), (7, ())], [(8, ())]])
        j.set_cursor("cdr", 5)
        assert j.purge() == 5  # offsets 1..5 are delivered: gone
        assert [low for low, _ in r.envelopes_beginning(0, 100)] == [3, 8]  # 3 still holds 7
        j.set_cursor("cdr", 10)
        assert j.purge() == 5
        assert r.envelopes_beginning(0, 100) == []
        r.record_envelopes([[(11, ())]])
        j.drop_cursors_except(["siem"])
        assert r.envelopes_beginning(0, 100) == []


def test_a_journal_written_before_envelope_records_gets_the_table_on_open(journal_path):
    with filled(journal_path, 3) as j:
        j.set_cursor("cdr", 2)
    db = sqlite3.connect(journal_path, isolation_level=None)
    db.execute("DROP TABLE envelopes")  # what the previous version wrote
    db.close()
    with pytest.raises(JournalCorrupt):  # a worker never upgrades: the supervisor's Journal does
        JournalReader(journal_path, "cdr")
    with Journal(journal_path, verify=True) as j:
        assert j.head() == 3 and j.cursors() == {"cdr": 2}
    with JournalReader(journal_path, "cdr") as r:
        assert r.envelope_horizon(0) == 0
        r.record_envelopes([[(3, ())]])
        assert r.envelopes_beginning(2, 3) == [(3, [(3, ())])]

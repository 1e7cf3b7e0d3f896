"""Numbered messages in the journal (bus/numbering.py): the highest sequence per publisher is
written with the events, survives a reopen, an older journal gains the table in place, and a
repeat is told from a new message."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from bus.journal import Journal
from bus.journal_reader import JournalReader
from bus.journal_schema import JournalCorrupt
from bus.numbering import Numbering
from tests.helpers import short_tmpdir


@pytest.fixture
def journal_path():
    with short_tmpdir() as d:
        yield os.path.join(d, "journal.sqlite3")


def number(pid: bytes, seq: int) -> bytes:
    return pid + seq.to_bytes(8, "big")


def seq(n: int) -> bytes:
    return n.to_bytes(8, "big")


A, B = b"A" * 8, b"B" * 8


def test_the_highest_number_per_publisher_is_journaled_with_the_events_and_survives_a_reopen(journal_path):
    with Journal(journal_path) as j:
        assert j.publisher_marks() == {}
        offsets = j.append(
            [
                ("conference_updated", b"{}", number(A, 1)),
                ("conference_updated", b"{}", None),
                ("conference_updated", b"{}", number(B, 7)),
                ("conference_updated", b"{}", number(A, 2)),
            ]
        )
        assert offsets == [1, 2, 3, 4]
        assert j.append([("conference_updated", b"{}")]) == [5]  # two-frame rows as before
        assert j.publisher_marks() == {A: seq(2), B: seq(7)}
    with Journal(journal_path) as j:
        assert j.publisher_marks() == {A: seq(2), B: seq(7)}
        # a sequence past what SQLite's INTEGER holds is stored as sent
        j.append([("conference_updated", b"{}", number(B, 2**64 - 1))])
        assert j.publisher_marks()[B] == seq(2**64 - 1)


def test_an_older_journal_without_the_table_gains_it_in_place(journal_path):
    with Journal(journal_path) as j:
        j.append([("conference_updated", b"{}")] * 3)
        j._db.execute("DROP TABLE publishers")  # what a journal of the previous version looks like
        epoch = j.epoch
    with pytest.raises(JournalCorrupt):
        JournalReader(journal_path, "cdr")  # a worker never upgrades: the supervisor's Journal does
    with Journal(journal_path, verify=True) as j:
        assert j.epoch == epoch and j.head() == 3 and j.publisher_marks() == {}
        j.append([("conference_updated", b"{}", number(A, 1))])
    with JournalReader(journal_path, "cdr") as r:
        assert len(r.read(0, 10)) == 4


def test_publishers_unseen_since_a_time_are_forgotten(journal_path):
    with Journal(journal_path) as j:
        j.append([("conference_updated", b"{}", number(A, 5))], accepted_at=1000.0)
        j.append([("conference_updated", b"{}", number(B, 9))])
        assert j.publisher_marks(unseen_since=time.time() - 3600) == {B: seq(9)}
        db = sqlite3.connect(journal_path)
        assert db.execute("SELECT COUNT(*) FROM publishers").fetchone()[0] == 1
        db.close()


def test_fresh_tells_repeats_and_accepts_gaps():
    n = Numbering({A: seq(3)})
    assert not n.fresh(number(A, 3)) and not n.fresh(number(A, 1))
    assert n.fresh(number(A, 4)) and n.fresh(number(A, 10))  # a gap: what is missing never came
    assert not n.fresh(number(A, 9))
    assert n.fresh(number(B, 1)) and not n.fresh(number(B, 1))
    assert not n.fresh(number(A, 2)) and n.fresh(number(A, 256))  # byte order is number order
    assert n.duplicates == 5 and n.highest == {A: seq(256), B: seq(1)}

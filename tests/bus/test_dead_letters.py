"""Dead-letter storage (bus/dead_letters.py): the worker's side on JournalReader, the
supervisor's on Journal, in the journal's own SQLite file; survives reopen, never purged."""

from __future__ import annotations

import os

import pytest

from bus.dead_letters import DETAIL_MAX_CHARS, DeadLetter
from bus.journal import Journal
from bus.journal_reader import JournalReader
from tests.helpers import short_tmpdir


@pytest.fixture
def journal_path():
    with short_tmpdir() as d:
        yield os.path.join(d, "state", "journal.sqlite3")


def setup_journal(path: str, rows: int = 5) -> Journal:
    j = Journal(path)
    j.append([(f"topic{i}", f"payload{i}".encode()) for i in range(1, rows + 1)], accepted_at=1000.0)
    j.ensure_cursor("cdr")
    j.ensure_cursor("siem")
    return j


def set_aside(reader: JournalReader, offset: int, status: int | None = 422, detail: str = "bad") -> None:
    reader.set_aside(
        offset,
        f"topic{offset}",
        f"payload{offset}".encode(),
        reader.accepted_at(offset),
        f"{reader.epoch}-{offset}",
        f"topic{offset}",
        3,
        status,
        detail,
    )


def test_set_aside_is_listed_for_the_supervisor_with_every_field(journal_path):
    with setup_journal(journal_path) as j, JournalReader(journal_path, "cdr") as r:
        set_aside(r, 4)
        set_aside(r, 2, status=None, detail="no answer")
        letters = j.dead_letters("cdr")
        assert [d.offset for d in letters] == [2, 4]  # journal order
        d = letters[1]
        assert isinstance(d, DeadLetter)
        assert (d.id, d.event, d.accepted_at, d.attempts, d.status, d.detail, d.redrive) == (
            f"{j.epoch}-4",
            "topic4",
            1000.0,
            3,
            422,
            "bad",
            False,
        )
        assert d.set_aside_at > 1000.0
        assert letters[0].status is None
        assert j.dead_letters("siem") == []
        assert j.dead_letter_counts() == {"cdr": 2}


def test_set_aside_again_replaces_and_clears_redrive(journal_path):
    with setup_journal(journal_path) as j, JournalReader(journal_path, "cdr") as r:
        set_aside(r, 3)
        assert j.mark_redrive("cdr", None) == 1
        assert [row[0] for row in r.redrive_rows()] == [3]
        set_aside(r, 3, status=400, detail="x" * (DETAIL_MAX_CHARS + 50))  # the redriven event failed again
        (d,) = j.dead_letters("cdr")
        assert d.status == 400 and not d.redrive and len(d.detail) == DETAIL_MAX_CHARS
        assert r.redrive_rows() == []


def test_set_aside_again_without_an_acceptance_time_keeps_the_first_one(journal_path):
    with setup_journal(journal_path) as j, JournalReader(journal_path, "cdr") as r:
        set_aside(r, 3)
        j.set_cursor("cdr", 5)
        j.purge(accepted_before=2000.0)  # the event row is gone (retention): the worker cannot look it up
        assert r.accepted_at(3) is None
        r.set_aside(3, "topic3", b"payload3", None, f"{r.epoch}-3", "topic3", 3, 400, "again")
        r.set_aside(4, "topic4", b"payload4", None, f"{r.epoch}-4", "topic4", 3, 400, "first time, no row")
        assert [(d.offset, d.accepted_at, d.detail) for d in j.dead_letters("cdr")] == [
            (3, 1000.0, "again"),
            (4, 0.0, "first time, no row"),
        ]


def test_mark_redrive_by_id_all_and_unknown(journal_path):
    with setup_journal(journal_path) as j, JournalReader(journal_path, "cdr") as r:
        for offset in (1, 3, 5):
            set_aside(r, offset)
        ids = [f"{j.epoch}-{o}" for o in (1, 3, 5)]
        assert j.mark_redrive("cdr", [ids[2], ids[0], ids[2]]) == 2
        assert r.redrive_rows() == [(1, "topic1", b"payload1", ids[0]), (5, "topic5", b"payload5", ids[2])]
        with pytest.raises(KeyError) as err:
            j.mark_redrive("cdr", [ids[1], "nope-1", "nope-2"])
        assert err.value.args[0] == "nope-1"  # the first unknown one
        assert [d.redrive for d in j.dead_letters("cdr")] == [True, False, True]  # nothing changed
        with pytest.raises(KeyError):
            j.mark_redrive("siem", [ids[1]])  # another sink's id is unknown there
        assert j.mark_redrive("cdr", []) == 3  # empty: all
        assert [row[0] for row in r.redrive_rows()] == [1, 3, 5]
        assert j.mark_redrive("siem", None) == 0


def test_forget_and_discard(journal_path):
    with (
        setup_journal(journal_path) as j,
        JournalReader(journal_path, "cdr") as r,
        JournalReader(journal_path, "siem") as other,
    ):
        set_aside(r, 1)
        set_aside(r, 2)
        set_aside(other, 2)
        other.forget_dead_letter(1)  # not siem's: nothing happens
        r.forget_dead_letter(1)  # delivered after a redrive
        assert [d.offset for d in j.dead_letters("cdr")] == [2]
        assert j.discard_dead_letter("cdr", f"{j.epoch}-2") is True
        assert j.discard_dead_letter("cdr", f"{j.epoch}-2") is False
        assert j.dead_letter_counts() == {"siem": 1}


def test_dead_letters_survive_reopen_purge_and_make_room(journal_path):
    with setup_journal(journal_path) as j, JournalReader(journal_path, "cdr") as r:
        set_aside(r, 2)
        j.mark_redrive("cdr", None)
        assert j.purge() == 5  # cursors at the head: the event rows go ...
        assert j.make_room(0) == 0
    with Journal(journal_path) as j, JournalReader(journal_path, "cdr") as r:  # ... the dead letter stays
        assert j.dead_letter_counts() == {"cdr": 1}
        assert r.redrive_rows() == [(2, "topic2", b"payload2", f"{j.epoch}-2")]
        assert j.dead_letters("cdr")[0].accepted_at == 1000.0


def test_dropping_a_removed_sinks_cursor_drops_its_dead_letters(journal_path):
    with setup_journal(journal_path) as j:
        for sink in ("cdr", "siem"):
            with JournalReader(journal_path, sink) as r:
                set_aside(r, 1)
        j.drop_cursors_except(["siem"])
        assert j.cursors() == {"siem": 5} and j.dead_letter_counts() == {"siem": 1}
        j.drop_cursors_except([])
        assert j.cursors() == {} and j.dead_letter_counts() == {}


def test_dead_letters_count_in_the_journals_size(journal_path):
    with setup_journal(journal_path) as j, JournalReader(journal_path, "cdr") as r:
        j.checkpoint()
        before = j.used_bytes()
        for offset in range(1, 6):
            r.set_aside(offset, "t", os.urandom(50_000), 1000.0, f"id-{offset}", "t", 1, 400, "")
        j.checkpoint()
        assert j.used_bytes() >= before + 250_000

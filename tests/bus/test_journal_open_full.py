"""Opening the journal on a full disk: one clear line (JournalFull, the broker's exit 1), never a
traceback; the supervisor's backoff restarts the broker until there is room."""

from __future__ import annotations

import os
import sqlite3

import pytest

from bus import journal_handle
from bus.journal import JournalAdmin
from bus.journal_schema import JournalFull
from bus.journal_writer import JournalWriter
from common.config import encode_spec, parse
from tests.bus.harness import start_broker


class FullDiskConnection:
    """A real connection whose `PRAGMA auto_vacuum` fails as SQLite's does on a full disk."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def execute(self, sql: str, *args):
        if sql.startswith("PRAGMA auto_vacuum"):
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, *args)

    def close(self) -> None:
        self._db.close()


@pytest.mark.parametrize("handle", [JournalWriter, JournalAdmin])
def test_a_full_disk_at_open_is_one_line_journal_full(tmp_path, monkeypatch, handle):
    real_connect = journal_handle.connect
    closed = []

    def connect(path, must_exist):
        conn = FullDiskConnection(real_connect(path, must_exist=must_exist))
        closed.append(conn)
        return conn

    monkeypatch.setattr(journal_handle, "connect", connect)
    path = str(tmp_path / "state" / "journal.sqlite3")
    with pytest.raises(JournalFull) as caught:
        handle(path)
    message = str(caught.value)
    assert "\n" not in message and "disk is full" in message and path in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no chained traceback
    with pytest.raises(sqlite3.ProgrammingError):  # the connection was closed, not leaked
        closed[0]._db.execute("SELECT 1")


def test_other_sqlite_errors_at_open_are_not_called_full(tmp_path, monkeypatch):
    def connect(path, must_exist):
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(journal_handle, "connect", connect)
    with pytest.raises(sqlite3.OperationalError):
        JournalWriter(str(tmp_path / "journal.sqlite3"))


def fill(directory: str) -> None:
    """Write DIRECTORY's file system full."""
    with open(os.path.join(directory, "filler"), "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass


@pytest.mark.root
@pytest.mark.agent_process
def test_the_broker_on_a_full_disk_exits_1_with_one_line(tiny_fs, tmp_path):
    state_dir = os.path.join(tiny_fs, "state")
    os.makedirs(state_dir)
    fill(tiny_fs)
    result = parse(f"""
[node]
address = "127.0.0.1"
location = "Oslo"
[agent]
runtime_dir = "{tmp_path}/run"
state_dir = "{state_dir}"
""")
    assert result.config is not None, result.problems
    err_path = str(tmp_path / "broker.stderr")
    proc = start_broker(encode_spec(result.config), err_path)
    assert proc.wait(10) == 1
    with open(err_path) as fh:
        lines = [line for line in fh.read().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "broker cannot start" in lines[0] and "disk is full" in lines[0] and "Traceback" not in lines[0]

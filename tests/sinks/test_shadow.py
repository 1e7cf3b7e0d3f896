"""The cursor shadow: acknowledgements survive the process, a void shadow is never trusted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from bus.shadow_marks import shadow_path
from sinks.shadow import RING, SIZE, CursorShadow

EPOCH = "0123456789abcdef"


def test_a_fresh_shadow_starts_from_the_sqlite_cursor(tmp_path):
    s = CursorShadow(str(tmp_path / "x.shadow"), EPOCH)
    assert s.resume(41) == (41, frozenset())
    assert os.path.getsize(s.path) == SIZE


def test_mark_and_offsets_acknowledged_above_it_come_back(tmp_path):
    path = str(tmp_path / "x.shadow")
    s = CursorShadow(path, EPOCH)
    s.resume(10)
    s.acknowledged((11, 12))
    s.moved(12)
    s.acknowledged((15, 16))  # 13 and 14 still held or in flight
    s.close()
    again = CursorShadow(path, EPOCH)
    assert again.resume(10) == (12, frozenset({15, 16}))


def test_survives_kill_9_of_the_writer(tmp_path):
    """The stores are in the page cache at once: no flush, no clean exit needed."""
    path = str(tmp_path / "k.shadow")
    code = textwrap.dedent(f"""
        import os, signal
        from sinks.shadow import CursorShadow
        s = CursorShadow({path!r}, {EPOCH!r})
        s.resume(0)
        s.acknowledged(range(1, 101))
        s.moved(100)
        s.acknowledged([105])
        print("ready", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
        timeout=30,
    )
    assert proc.returncode == -signal.SIGKILL and "ready" in proc.stdout, proc.stderr
    assert CursorShadow(path, EPOCH).resume(0) == (100, frozenset({105}))


def test_another_epoch_or_a_moved_cursor_voids_and_clears_it(tmp_path):
    path = str(tmp_path / "v.shadow")
    s = CursorShadow(path, EPOCH)
    s.resume(5)
    s.acknowledged((7,))
    s.moved(6)
    s.close()
    assert CursorShadow(path, "ffffffffffffffff").resume(5) == (5, frozenset())  # a new journal
    s = CursorShadow(path, EPOCH)
    s.resume(5)
    s.acknowledged((7,))
    s.moved(6)
    s.close()
    # A replay moved the SQLite cursor back to 2: the acknowledgements of the old lineage do not count ...
    assert CursorShadow(path, EPOCH).resume(2) == (2, frozenset())
    # ... and are gone, even once the cursor is back where the shadow was based
    assert CursorShadow(path, EPOCH).resume(2) == (2, frozenset())


def test_committed_rebases_and_old_slots_are_not_mistaken(tmp_path):
    path = str(tmp_path / "r.shadow")
    s = CursorShadow(path, EPOCH)
    s.resume(0)
    s.acknowledged((3,))  # slot 3 holds offset 3
    s.moved(RING + 2)
    s.committed(RING + 2)
    s.close()
    mark, acked = CursorShadow(path, EPOCH).resume(RING + 2)
    assert mark == RING + 2 and acked == frozenset()  # slot 3 is for offset RING + 3 now: 3 is not it


def test_a_file_of_another_size_is_started_afresh(tmp_path):
    path = tmp_path / "old.shadow"
    path.write_bytes(b"ESAS" + b"\xff" * 60)
    assert CursorShadow(str(path), EPOCH).resume(9) == (9, frozenset())


def test_path_stays_inside_the_state_dir():
    assert shadow_path("/var/lib/x", "..") == "/var/lib/x/cursor-...shadow"

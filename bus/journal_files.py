"""The files next to the journal that are not SQLite's: the disk-space reserve the broker
releases when the disk fills (`SpaceReserve`), and moving a corrupt journal aside
(`quarantine`). Both are re-exported by bus/journal.py."""

from __future__ import annotations

import os
import sqlite3
import time

from bus.journal_schema import HEAD_SQL


def quarantine(path: str, wall: float | None = None) -> tuple[str, int | None]:
    """Move a corrupt journal (with its -wal and -shm) aside as `PATH.corrupt-<UTC time>`, so a
    new one can start and the old one stays for inspection. Returns the new name and how many
    events it may have held that not every sink had (None when it cannot be read at all)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if wall is None else wall))
    target = f"{path}.corrupt-{stamp}"
    for n in range(1, 100):
        if not os.path.exists(target):
            break
        target = f"{path}.corrupt-{stamp}-{n}"
    lost = _undelivered_estimate(path)
    os.rename(path, target)
    for suffix in ("-wal", "-shm"):
        try:
            os.rename(path + suffix, target + suffix)
        except FileNotFoundError:
            pass
    return target, lost


def _undelivered_estimate(path: str) -> int | None:
    """Offsets above the lowest cursor up to the head, read-only and best effort."""
    try:
        uri = "file:" + os.path.abspath(path).replace("?", "%3f").replace("#", "%23") + "?mode=ro"
        db = sqlite3.connect(uri, uri=True, timeout=1)
    except sqlite3.Error:
        return None
    try:
        head = db.execute(HEAD_SQL).fetchone()[0]
        low = db.execute('SELECT MIN("offset") FROM cursors').fetchone()[0]
        return max(0, head - (low or 0))
    except sqlite3.Error:
        try:
            return db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        except sqlite3.Error:
            return None
    finally:
        db.close()


class SpaceReserve:
    """A preallocated file next to the journal, given back to the file system when the disk fills.

    On a full disk SQLite cannot even delete rows or move a cursor (both write
    the WAL), so a full journal could never drain. Releasing the reserve gives
    the workers' cursor commits, the purge and the checkpoint room to work;
    `ensure()` succeeding again means the disk has room for the reserve plus
    new events."""

    def __init__(self, path: str, size: int):
        self.path = path
        self.size = size

    def present(self) -> bool:
        try:
            return os.path.getsize(self.path) >= self.size
        except OSError:
            return False

    def ensure(self) -> bool:
        """Create (allocate) the reserve if missing; False when the disk has no room for it."""
        if self.present():
            return True
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o640)
        except OSError:
            return False
        try:
            os.posix_fallocate(fd, 0, self.size)
            os.fsync(fd)
            return True
        except OSError:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            return False
        finally:
            os.close(fd)

    def release(self) -> bool:
        """Delete the reserve; True when there was one to give back."""
        try:
            os.unlink(self.path)
            return True
        except FileNotFoundError:
            return False

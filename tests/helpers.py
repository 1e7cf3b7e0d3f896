"""Small helpers shared by test modules of different packages."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def short_tmpdir() -> Iterator[str]:
    """A fresh directory under /tmp with a short path (Unix socket paths are limited to ~100 bytes), removed after."""
    d = tempfile.mkdtemp(prefix="esa-", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def read_log(path: str) -> str:
    """The whole text of the log file at PATH, or "" while it does not exist."""
    try:
        with open(path, errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""

"""Small helpers shared by test modules of different packages."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any


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


@contextlib.contextmanager
def stopped_after(make: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """A factory for a fixture: what MAKE(*args, **kw) starts is kept and stopped (.stop()) when the block ends."""
    started = []

    def start(*args: Any, **kw: Any) -> Any:
        thing = make(*args, **kw)
        started.append(thing)
        return thing

    try:
        yield start
    finally:
        for thing in started:
            thing.stop()

"""Small helpers shared by test modules of different packages."""

from __future__ import annotations


def read_log(path: str) -> str:
    """The whole text of the log file at PATH, or "" while it does not exist."""
    try:
        with open(path, errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""

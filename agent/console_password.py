"""`eventsink-agent console-password --file PATH` (docs/commands.md, docs/console.md): asks for the
console's password twice on a terminal (or reads one line from stdin when it is not
one) and writes its hash (common/passwords.py) to PATH, mode 0600."""

from __future__ import annotations

import getpass
import os
import sys

from common import passwords

PROG = "eventsink-agent console-password"
MIN_LENGTH = 8


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    return 1


def read_password() -> str | None:
    """The new password: twice from the terminal, or one line of stdin. None when they differ."""
    if sys.stdin.isatty():
        first = getpass.getpass("New console password for admin: ")
        again = getpass.getpass("Again: ")
        return first if first == again else None
    return sys.stdin.readline().rstrip("\r\n")


def main(path: str) -> int:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return _fail(f"cannot write {path}: no such directory {directory}")
    password = read_password()
    if password is None:
        return _fail("the two passwords differ; nothing written")
    if len(password) < MIN_LENGTH:
        return _fail(f"the password must have at least {MIN_LENGTH} characters; nothing written")
    if len(password.encode()) > passwords.MAX_PASSWORD_BYTES:
        return _fail(f"the password must have at most {passwords.MAX_PASSWORD_BYTES} bytes; nothing written")
    try:
        passwords.write_hash_file(path, passwords.hash_password(password))
    except OSError as exc:
        return _fail(f"cannot write {path}: {exc.strerror or exc}")
    print(f"{path}: written (mode 0600); set [console] password_file to it", file=sys.stderr)
    return 0

"""The console password's hash (docs/console.md): how `eventsink-agent console-password`
writes it and how the console checks a login against it.

A slow salted hash from the standard library: scrypt (RFC 7914) with N=2^14, r=8,
p=1 (about 16 MiB and a few tens of ms per try, which also slows guessing beyond
the console's login rate limit), a 16-byte random salt, compared in constant time.
One line in the file: `scrypt$N$r$p$SALT$HASH` (SALT and HASH in base64).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

SCHEME = "scrypt"
N, R, P = 1 << 14, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32
MAX_PASSWORD_BYTES = 1024  # longer is no safer, and costs scrypt more per try


class BadHashFile(ValueError):
    """A password file that is not one `scrypt$...` line written by console-password."""


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password.encode(), salt, N, R, P)
    b64 = base64.b64encode
    return f"{SCHEME}${N}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=HASH_BYTES)


def parse_hash(line: str) -> tuple[int, int, int, bytes, bytes]:
    """(n, r, p, salt, hash) of a hash line; BadHashFile when it is not one."""
    parts = line.strip().split("$")
    try:
        scheme, n, r, p, salt, digest = parts
        if scheme != SCHEME:
            raise ValueError
        n_, r_, p_ = int(n), int(r), int(p)
        if not (1 < n_ <= 1 << 20 and n_ & (n_ - 1) == 0 and 0 < r_ <= 32 and 0 < p_ <= 16):
            raise ValueError
        return n_, r_, p_, base64.b64decode(salt, validate=True), base64.b64decode(digest, validate=True)
    except ValueError:
        raise BadHashFile("not a password hash written by `eventsink-agent console-password`") from None


def verify_password(password: str, line: str) -> bool:
    """True when PASSWORD matches the hash LINE (constant-time comparison)."""
    n, r, p, salt, digest = parse_hash(line)
    raw = password.encode("utf-8", "surrogateescape")
    if len(raw) > MAX_PASSWORD_BYTES:
        return False
    return hmac.compare_digest(_scrypt(raw, salt, n, r, p), digest)


def read_hash_file(path: str) -> str:
    """The hash line of PATH; OSError when unreadable, BadHashFile when not a hash."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        line = fh.readline(4096).strip()
    parse_hash(line)
    return line


def write_hash_file(path: str, line: str) -> None:
    """Write LINE to PATH with mode 0600 from its creation on (never readable by others, even briefly)."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(line + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise

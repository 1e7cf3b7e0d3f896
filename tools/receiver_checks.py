"""The test receiver's checks on one request: Basic auth, a bearer token, a
Standard Webhooks signature (over the bytes as received, so over the compressed
bytes of a gzip body; the scheme is the agent's own, sinks/signing.py), and
unpacking a gzip body within a size bound. Each check answers None when the
request passes, else the reason it does not."""

from __future__ import annotations

import base64
import binascii
import hmac
import zlib

from common.config_types import secret_key as config_secret_key
from sinks.signing import verify


def basic_problem(headers: dict[str, str], username: str, password: str) -> str | None:
    given = headers.get("authorization", "")
    if not given.lower().startswith("basic "):
        return "missing Basic authorization"
    try:
        user, _, pw = base64.b64decode(given[6:].strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return "malformed Basic authorization"
    ok_user = hmac.compare_digest(user.encode(), username.encode())
    ok_pw = hmac.compare_digest(pw.encode(), password.encode())
    if not (ok_user and ok_pw):
        return f"wrong Basic credentials (user {user!r:.40})"
    return None


def bearer_problem(headers: dict[str, str], token: str) -> str | None:
    scheme, _, given = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return "missing Bearer authorization"
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return "wrong bearer token"
    return None


def signature_problem(headers: dict[str, str], body: bytes, key: bytes) -> str | None:
    """Checked by the agent's own scheme (sinks/signing.py), so the receiver cannot drift from what it signs."""
    wid, ts, sig = (headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (wid and ts and sig):
        return "missing webhook-id/webhook-timestamp/webhook-signature"
    if not ts.strip().isdigit():
        return "webhook-timestamp is not an integer"
    # Headers that are not ASCII are simply bad signatures: hmac.compare_digest refuses such a str,
    # and int() some of the digits str.isdigit() admits (e.g. superscripts).
    if not (sig.isascii() and ts.isascii()) or not verify(key, wid, ts.strip(), body, sig):
        return "bad webhook-signature"
    return None


def gunzip(body: bytes, limit: int) -> bytes | None:
    """BODY decompressed (gzip), None when it is not gzip or unpacks to more than LIMIT bytes."""
    unpack = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = unpack.decompress(body, limit + 1)
    except zlib.error:
        return None
    if len(out) > limit or not unpack.eof:
        return None
    return out


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret (common.config's decoding), or ValueError with the sentence to show."""
    try:
        return config_secret_key(secret)
    except (ValueError, binascii.Error):
        raise ValueError("secret must be 'whsec_' followed by a base64 key") from None

"""Standard Webhooks signatures for a sink's POSTs.

Owns the signature scheme: `webhook-signature` = `v1,` + base64(HMAC-SHA256(key,
f"{webhook-id}.{webhook-timestamp}.{body}")), with the key decoded from the
sink's `whsec_...` secret by `common.config_types.secret_key`. A retry is signed again
with a fresh timestamp; the id stays the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from common.config_types import secret_key


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for one POST."""
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify(key: bytes, webhook_id: str, timestamp: str, body: bytes, header: str) -> bool:
    """True when any `v1,` signature in HEADER (space separated) matches."""
    if not timestamp.isdigit():
        return False
    expected = signature(key, webhook_id, int(timestamp), body)
    return any(hmac.compare_digest(candidate, expected) for candidate in header.split())


class Signer:
    """Signs POSTs with one sink's secret; the key never leaves this object."""

    __slots__ = ("_key",)

    def __init__(self, secret: str):
        self._key = secret_key(secret)

    def __repr__(self) -> str:
        return "Signer(***)"

    def headers(self, webhook_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
        """`webhook-timestamp` and `webhook-signature` for one attempt, signed now."""
        timestamp = int(time.time() if now is None else now)
        return {
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(self._key, webhook_id, timestamp, body),
        }

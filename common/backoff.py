"""Backoff as a small immutable policy object (in the manner of urllib3's Retry).

One policy serves both a sink's POST retries and the supervisor's worker
restarts: each failure returns a new policy with the failure counted, a
success returns the reset policy. Nothing here sleeps or reads a clock.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass, replace

RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class Backoff:
    initial: float  # s, the first wait
    maximum: float  # s, a wait above this is "exceeded"
    factor: float = 2.0
    failures: int = 0  # consecutive failures so far
    floor: float = 0.0  # a server-imposed minimum for the current wait (Retry-After)

    @property
    def current(self) -> float:
        """The wait owed now: 0 when healthy, else initial * factor**(failures-1), at least `floor`."""
        if self.failures == 0:
            return 0.0
        return max(self.initial * self.factor ** (self.failures - 1), self.floor)

    @property
    def next(self) -> float:
        """The wait the next failure would impose (ignoring any Retry-After)."""
        return self.initial * self.factor**self.failures

    @property
    def exceeded(self) -> bool:
        """True when the current wait is above the maximum."""
        return self.current > self.maximum

    def failed(self, retry_after: float | None = None) -> Backoff:
        return replace(self, failures=self.failures + 1, floor=max(0.0, retry_after or 0.0))

    def succeeded(self) -> Backoff:
        if not self.failures and not self.floor:
            return self  # the common case, once per delivered POST: no new object
        return replace(self, failures=0, floor=0.0)

    def capped(self) -> float:
        """The current wait, never above the maximum (for restarts that must go on)."""
        return min(self.current, self.maximum)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent/garbage."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not just isdigit(): "\xb2" (latin-1 superscript 2) passes it
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))

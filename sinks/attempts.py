"""A worker's recent POST attempts: `AttemptRing`, and the `AttemptsAnswer` it
gives when the supervisor asks (`answer`; `GET /v1/sinks/NAME/attempts`).

Recording is on the delivery hot path (`Dispatcher._count`, once per POST that
ended, the stop event included), so it costs one tuple appended to a bounded
deque with the wall time the caller already took. Everything else happens only
when asked: ISO times, the entries as Structs, and the scrubbing of each
detail, with the secrets this worker's log lines are masked with (plus the
config's own, should logging not be set up) and any URL's credentials removed.

A success's detail is "HTTP 200" (its status; the answer's reason phrase is
not read for a 2xx, to keep that path cheap); a failure's is the reason
support.events gives for it (`Result.detail`, "no detail" when there is none).
"""

from __future__ import annotations

import itertools
import logging
import re
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from common import logs
from common.link import AttemptEntry, Attempts, AttemptsAnswer
from common.timespec import iso_utc
from common.vocabulary import PostOutcome

RING_SIZE = 1000  # attempts kept: the most `limit` may ask for
# scheme://user:password@ -> scheme:// (libcurl is only given redacted URLs, but a detail may quote
# another one, e.g. a redirect's Location: whatever the source, no credentials leave the worker).
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")


class AttemptRing:
    """The last RING_SIZE POST attempts of this worker, oldest first, as plain tuples.

    An entry: (wall time at the end, seq, events, webhook_id, outcome, status, duration, detail)."""

    __slots__ = ("_entries",)

    def __init__(self, size: int = RING_SIZE):
        self._entries: deque[tuple] = deque(maxlen=size)

    def record(self, wall: float, post: Any, result: Any) -> None:
        """One attempt of POST that ended with RESULT (sinks.http.Result) at WALL (time.time())."""
        self._entries.append(
            (
                wall,
                post.seq,
                len(post.times),
                post.webhook_id,
                result.outcome,
                result.status,
                result.duration,
                result.detail,
            )
        )

    def __len__(self) -> int:
        return len(self._entries)

    def newest(self, limit: int) -> list[tuple]:
        """The LIMIT most recent entries, newest first."""
        return list(itertools.islice(reversed(self._entries), max(0, limit)))


def worker_secrets(config: Any) -> list[str]:
    """What this worker's logs mask: their filters' secrets and CONFIG's (should logging not be set up)."""
    secrets: list[str] = list(logs.config_secrets(config)) if config is not None else []
    for handler in logging.getLogger().handlers:
        for f in handler.filters:
            if isinstance(f, logs.RedactSecrets):
                secrets += f.secrets
    return secrets


def scrubber(config: Any) -> Callable[[str], str]:
    """Masks what this worker's logs mask and URL credentials."""
    redact = logs.RedactSecrets(worker_secrets(config))

    def scrub(text: str) -> str:
        return _URL_CREDENTIALS.sub(r"\1", redact.scrub(text))

    return scrub


def entry(raw: tuple, scrub: Callable[[str], str]) -> AttemptEntry:
    """One ring entry as the answer shows it."""
    wall, seq, events, webhook_id, outcome, status, duration, detail = raw
    if outcome == PostOutcome.SUCCESS:
        text = f"HTTP {status}"
    else:
        text = scrub(detail or "no detail")  # the words FailureLog writes after the outcome
    return AttemptEntry(
        at=iso_utc(wall),
        seq=seq,
        events=events,
        webhook_id=webhook_id,
        outcome=outcome,
        status=status,
        duration=round(duration, 6),
        detail=text,
    )


def entries(raws: Iterable[tuple], config: Any) -> list[AttemptEntry]:
    scrub = scrubber(config)
    return [entry(raw, scrub) for raw in raws]


def answer(ring: AttemptRing, ask: Attempts, sink: str, config: Any) -> AttemptsAnswer:
    """The answer to ASK: its `limit` most recent attempts, newest first, scrubbed, with its token."""
    return AttemptsAnswer(token=ask.token, sink=sink, attempts=entries(ring.newest(ask.limit), config))

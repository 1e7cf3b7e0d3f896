"""A worker's recent POSTs as sent: `DeliveryRing`, the `DeliveriesAnswer` it
gives when the supervisor asks (`GET /v1/sinks/NAME/deliveries`), and the
stream of each completed POST while someone follows (`GET /v1/deliveries?follow=1`).

Recording is on the delivery hot path (`Dispatcher._count`, once per POST that
ended), so it keeps one tuple of references already made: the wall time, the
Post, and its Result, which holds the header lines and the body exactly as
given to libcurl (sinks/http.py). With nobody following that is all. While the
supervisor says someone follows (`FollowDeliveries`), the same tuple also goes
on a list the worker's loop sends (`stream`) at most every STREAM_INTERVAL: at
once for a POST after a quiet spell, batched during a burst (one message per
POST at thousands a second cost the worker and the supervisor three times the
CPU of the POSTs themselves; a batch per 0.1 s costs little and is still live).

Everything else happens only when asked or streamed: ISO times, gzip
decompression, and masking. Every secret becomes "***": the whole value of
`Authorization` and `Proxy-Authorization` and of each configured `headers`
entry, and in every other header value and in the body each string this
worker's logs mask (passwords, tokens, signing secrets, proxy credentials:
sinks/attempts.py's `worker_secrets`). `Expect:` (libcurl's instruction to send no
Expect header) is not shown: it is not sent.
"""

from __future__ import annotations

import itertools
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from common import internal
from common.link import Deliveries, DeliveriesAnswer, DeliveriesStreamed, DeliveryEntry, FollowDeliveries
from common.logs import RedactSecrets
from common.timespec import iso_utc
from sinks.attempts import worker_secrets

RING_SIZE = 100  # POSTs kept: the most `limit` may ask for
STREAM_BATCH = 100  # POSTs per DeliveriesStreamed message at most
STREAM_INTERVAL = 0.1  # s between two streamed messages of a worker at least
MASK = "***"
ALWAYS_SECRET = frozenset({"authorization", "proxy-authorization"})
GUNZIP_LIMIT = 16 * 1024 * 1024  # bytes a shown body may unpack to (a body is what the worker made)
COMMANDS = (Deliveries, FollowDeliveries)  # what the worker hands to `obey`


class DeliveryRing:
    """The last RING_SIZE POSTs of this worker, oldest first, as (wall time, Post, Result) tuples;
    `fresh` holds those completed since the last `stream` while `following`."""

    __slots__ = ("_entries", "following", "fresh", "stream_at", "_masker")

    def __init__(self, size: int = RING_SIZE):
        self._entries: deque[tuple] = deque(maxlen=size)
        self.following = False
        self.fresh: list[tuple] = []
        self.stream_at = 0.0  # monotonic: `fresh` goes no sooner (a deadline of the worker's loop)
        self._masker: tuple[Any, str, Masker] | None = None  # (config, sink, its Masker)

    def record(self, wall: float, post: Any, result: Any) -> None:
        """One POST that ended with RESULT (sinks.http.Result, its `request` as sent) at WALL."""
        entry = (wall, post, result)
        self._entries.append(entry)
        if self.following:
            self.fresh.append(entry)

    def follow(self, on: bool) -> None:
        self.following = on
        if not on:
            self.fresh.clear()

    def masker(self, config: Any, sink: str) -> Masker:
        """The Masker of CONFIG (kept while the worker runs with it: building one reads the
        secrets, password and token files included, so a followed worker must not per turn)."""
        kept = self._masker
        if kept is None or kept[0] is not config or kept[1] != sink:
            kept = self._masker = (config, sink, Masker(config, sink))
        return kept[2]

    def __len__(self) -> int:
        return len(self._entries)

    def newest(self, limit: int) -> list[tuple]:
        """The LIMIT most recent entries, newest first."""
        return list(itertools.islice(reversed(self._entries), max(0, limit)))


class Masker:
    """Masks one sink's secrets in headers and bodies (built per answer, never per POST)."""

    def __init__(self, config: Any, sink_name: str):
        sink = config.sink_named(sink_name) if config is not None else None
        self.secret_names = ALWAYS_SECRET | {k.lower() for k in (sink.headers if sink is not None else {})}
        # Only the secrets: a URL with credentials inside an event is the event's, shown as sent.
        self.scrub: Callable[[str], str] = RedactSecrets(worker_secrets(config)).scrub

    def headers(self, lines: Iterable[str]) -> dict[str, str]:
        """libcurl's header lines ("Name: value", "Name;" for an empty value, "Name:" to suppress one)."""
        shown: dict[str, str] = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep:  # "Name;": sent with an empty value
                name, value = line.rstrip(";"), ""
            elif not value.strip():
                continue  # "Name:": libcurl sends no such header
            name = name.strip()
            value = value.strip()
            shown[name] = MASK if name.lower() in self.secret_names and value else self.scrub(value)
        return shown

    def body(self, raw: bytes, headers: dict[str, str]) -> str:
        if any(k.lower() == "content-encoding" and v.lower() == "gzip" for k, v in headers.items()):
            raw = gunzip(raw)
        return self.scrub(raw.decode("utf-8", "replace"))


def gunzip(raw: bytes) -> bytes:
    """RAW unpacked (at most GUNZIP_LIMIT bytes); RAW itself when it is not gzip."""
    try:
        unpacker = zlib.decompressobj(wbits=31)
        return unpacker.decompress(raw, GUNZIP_LIMIT)
    except zlib.error:
        return raw


def entry(raw: tuple, masker: Masker) -> DeliveryEntry:
    """One ring entry as the answer shows it."""
    wall, post, result = raw
    lines, body = result.request or ((), b"")
    headers = masker.headers(lines)
    return DeliveryEntry(
        at=iso_utc(wall),
        webhook_id=post.webhook_id,
        seq=post.seq,
        events=post.count,
        outcome=result.outcome,
        status=result.status,
        duration=round(result.duration, 6),
        headers=headers,
        body=masker.body(body, headers),
    )


def answer(ring: DeliveryRing, ask: Deliveries, sink: str, config: Any) -> DeliveriesAnswer:
    """The answer to ASK: its `limit` most recent POSTs as sent, newest first, masked, with its token."""
    masker = ring.masker(config, sink)
    return DeliveriesAnswer(token=ask.token, sink=sink, deliveries=[entry(r, masker) for r in ring.newest(ask.limit)])


def obey(command: Any, ring: DeliveryRing, link: Any, sink: str, config: Any) -> None:
    """A supervisor command of COMMANDS: answer a `Deliveries`, start or stop following."""
    if isinstance(command, Deliveries):
        internal.send_nowait(link, answer(ring, command, sink, config))
    else:
        ring.follow(command.on)


def stream(link: Any, ring: DeliveryRing, sink: str, config: Any, now: float) -> None:
    """Send the POSTs completed since the last call (the worker's loop, from `ring.stream_at` on).

    Best effort: should the link's queue be full, those POSTs are not streamed (the ring keeps them)."""
    fresh, ring.fresh = ring.fresh, []
    ring.stream_at = now + STREAM_INTERVAL
    masker = ring.masker(config, sink)
    for start in range(0, len(fresh), STREAM_BATCH):
        batch = [entry(r, masker) for r in fresh[start : start + STREAM_BATCH]]
        internal.send_nowait(link, DeliveriesStreamed(sink=sink, deliveries=batch))

"""Shaping: from journaled bus events to the POSTs one sink sends, in its send order.

Owns the sink's `seq` counter (assigned when an event enters the send order;
1 = eventsink_started), the filters (proxying role, the sink's `events` list,
version 1 never sees the media events), the media-stream cache that pairs a
`participant_disconnected` with its `participant_media_streams_destroyed`
(version 2: the media message immediately before; version 1: merged into the
disconnected's data), and the bulk batcher. Pure: the monotonic time is passed
to each call, the wall clock and the id source of lifecycle events are handed
in (`wall_clock`, `new_id`), and results leave through two callbacks,
`emit(Post)` (the next stage's `put`) and `discard(offset)` (an offset that
is done without a POST of its own); `on_hold(deadline)` tells the owner's
loop when a held event's wait ends.

An event that a recorded bulk envelope already holds (`recorded(offset)`, the
worker's sinks/envelope_book.py) is shaped as it was the first time, not by
the cache: sent at once, and on version 1 merged with exactly the media
streams message it was merged with (`_replay_item`), so the envelope re-forms
identically.
"""

from __future__ import annotations

import logging
import time as _time
import uuid as _uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import orjson

from common.config_types import Config, SinkConfig
from common.logs import RateLimited
from common.vocabulary import RESERVED_PREFIX, AgentEvent
from sinks import envelope
from sinks.post import Post

log = logging.getLogger("sinks.shaping")

DISCONNECTED = "participant_disconnected"
MEDIA_DESTROYED = "participant_media_streams_destroyed"
MEDIA_WINDOW = "participant_media_stream_window"

BAD_INPUT_LOG_INTERVAL = 60.0  # s between two lines about payloads that are not bus events

# What happens to an event of a given name.
SEND, DROP, PAIR = "send", "drop", "pair"


def _random_id() -> str:
    return _uuid.uuid4().hex


@dataclass(frozen=True)
class ShapeSettings:
    """What shaping needs from the config, precomputed."""

    node: bytes  # node.address as a JSON string
    version: int
    proxying: bool
    events: frozenset[str]  # empty = all
    media_streams_wait: float
    cache_expiration: float
    actions: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, config: Config, sink: SinkConfig) -> ShapeSettings:
        return cls(
            node=envelope.json_string(config.node.address),
            version=sink.version,
            proxying=config.node.role == "proxying",
            events=frozenset(sink.events),
            media_streams_wait=config.tuning.media_streams_wait,
            cache_expiration=config.tuning.cache_expiration,
        )

    def allowed(self, name: str) -> bool:
        return not self.proxying and (not self.events or name in self.events)

    def action(self, name: str) -> str:
        """SEND, DROP or PAIR (wait in the media-stream cache) for events named NAME."""
        found = self.actions.get(name)
        if found is None:
            found = self.actions[name] = self._decide(name)
        return found

    def _decide(self, name: str) -> str:
        v1 = self.version == 1
        pairing = self.allowed(DISCONNECTED) and (v1 or self.allowed(MEDIA_DESTROYED))
        if name == MEDIA_WINDOW:
            return DROP if v1 or not self.allowed(name) else SEND
        if name == MEDIA_DESTROYED:
            if pairing:
                return PAIR
            return SEND if self.allowed(name) and not v1 else DROP
        if name == DISCONNECTED:
            return PAIR if pairing else (SEND if self.allowed(name) else DROP)
        return SEND if self.allowed(name) else DROP


@dataclass(slots=True)
class _Held:
    offset: int
    event: envelope.BusEvent
    deadline: float  # monotonic time its wait is over
    horizon: float = 0.0  # publish time after which its partner can no longer be expected


class Shaper:
    """Turns (offset, payload) into Posts in send order, holding disconnects for their media streams."""

    def __init__(
        self,
        settings: ShapeSettings,
        epoch: str,
        sink: str,
        emit: Callable[[Post], None],
        discard: Callable[[int], None],
        *,
        wall_clock: Callable[[], float] = _time.time,
        new_id: Callable[[], str] = _random_id,
        recorded: Callable[[int], tuple[int, tuple[int, ...]] | None] | None = None,
    ):
        self.settings = settings
        # offset -> the (offset, merged offsets) of the recorded inner envelope holding it, or None
        self.recorded = recorded
        # v1, recorded merges: a media message read first -> (its disconnect's offset, it) ...
        self._recorded_media: dict[int, tuple[int, envelope.BusEvent]] = {}
        self._awaiting_media: dict[int, tuple[int, envelope.BusEvent]] = {}  # ... a media offset -> its disconnect
        self.wall_clock = wall_clock  # the `time` of a lifecycle envelope
        self.new_id = new_id  # makes each lifecycle event's webhook-id unique
        self.epoch = epoch
        self.sink = sink
        self.seq = 0
        self.bad_payloads = 0
        self._bad_payload_log = RateLimited(BAD_INPUT_LOG_INTERVAL)  # fed the `now` of each offer
        self.latest_published = 0.0  # the latest publish time offered so far
        self._emit_post = emit
        self._discard = discard
        self.on_hold: Callable[[float], None] | None = None  # a held event's deadline, for the owner's timer
        self._disconnects: dict[str, _Held] = {}  # uuid -> held participant_disconnected
        self._media: dict[str, _Held] = {}  # uuid -> held participant_media_streams_destroyed

    @property
    def held(self) -> int:
        return len(self._disconnects) + len(self._media) + len(self._recorded_media) + len(self._awaiting_media)

    def configure(self, settings: ShapeSettings) -> None:
        """New settings for the events that follow (held events keep their deadlines)."""
        self.settings = settings

    # ------------------------------------------------------------ input

    def offer(self, offset: int, payload: bytes, now: float) -> None:
        """One journaled bus event, taken at monotonic time NOW."""
        try:
            event = envelope.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            self.bad_payloads += 1
            if self._bad_payload_log.allow(now=now) is not None:
                log.warning(
                    "sink %s: skipping journal offset %d: not a bus event (%s); %d skipped so far",
                    self.sink,
                    offset,
                    exc,
                    self.bad_payloads,
                )
            self._discard(offset)
            return
        try:  # _published(event), inlined: once per event
            published = float(event.time)
        except ValueError:
            published = 0.0
        if published > self.latest_published:
            self.latest_published = published
        if self.recorded is not None:
            item = self.recorded(offset)
            if item is not None:
                self._replay_item(offset, event, item, now)
                return
        action = self.settings.actions.get(event.event) or self.settings.action(event.event)
        if action == SEND:
            self._emit(offset, event, now, published=published)
        elif action == DROP:
            self._discard(offset)
        else:
            self._pair(offset, event, now)

    def lifecycle(self, name: str, now: float, wall: float | None = None) -> Post:
        """An agent-made event (data `{}`) taking the next seq; returned, not emitted (the caller queues it)."""
        wall = self.wall_clock() if wall is None else wall
        webhook_id = f"{self.epoch}-{self.sink}-{name.removeprefix(RESERVED_PREFIX)}-{self.new_id()}"
        return self._post(name, (), envelope.json_time(wall), b"{}", webhook_id, wall, now)

    def redriven(self, offset: int, sent_body: bytes, webhook_id: str, now: float) -> Post:
        """A dead letter sent again: the envelope it was set aside with (SENT_BODY), under the next seq,
        with its original webhook-id; returned, not emitted. Its journal offset is done already."""
        self.seq += 1
        doc = orjson.loads(sent_body)
        doc["seq"] = self.seq
        return Post(
            self.seq, str(doc.get("event", "")), orjson.dumps(doc), webhook_id, (), (0.0,), now, dead_letter=offset
        )

    # ------------------------------------------------------------ the media-stream cache

    def _pair(self, offset: int, event: envelope.BusEvent, now: float) -> None:
        uuid = envelope.participant_uuid(event.data)
        if uuid is None:  # cannot be matched: send (or drop) it as it is
            self._release_alone(_Held(offset, event, now))
            return
        if event.event == DISCONNECTED:
            media = self._media.pop(uuid, None)
            if media is not None:
                self._release_pair(_Held(offset, event, now), media, now)
                return
            self._hold(self._disconnects, uuid, offset, event, now, self.settings.media_streams_wait)
        else:
            held = self._disconnects.pop(uuid, None)
            if held is not None:
                self._release_pair(held, _Held(offset, event, now), now)
                return
            self._hold(self._media, uuid, offset, event, now, self.settings.cache_expiration)

    def _hold(
        self, cache: dict[str, _Held], uuid: str, offset: int, event: envelope.BusEvent, now: float, wait: float
    ) -> None:
        """Hold EVENT in CACHE under UUID for WAIT seconds; an earlier one it replaces is released alone."""
        old = cache.pop(uuid, None)
        if old is not None:
            self._release_alone(old)
        cache[uuid] = _Held(offset, event, now + wait, _published(event) + wait)
        if self.on_hold is not None:
            self.on_hold(now + wait)

    def _replay_item(
        self, offset: int, event: envelope.BusEvent, item: tuple[int, tuple[int, ...]], now: float
    ) -> None:
        """OFFSET is in a recorded envelope as ITEM (its inner envelope's offset, the offsets merged
        into it): shape it as the first time, whatever the cache would do now."""
        primary, merged = item
        if not merged:
            self._emit(offset, event, now)
        elif offset != primary:  # the media streams message of a merged disconnect
            waiting = self._awaiting_media.pop(offset, None)
            if waiting is None:
                self._recorded_media[offset] = (primary, event)
            else:
                self._merge(waiting[0], waiting[1], offset, event, now)
        else:
            media_offset = merged[0]
            media = self._recorded_media.pop(media_offset, None)
            if media is not None:
                self._merge(offset, event, media_offset, media[1], now)
            elif media_offset > offset:  # it comes after (the disconnect was held for it)
                self._awaiting_media[media_offset] = (offset, event)
            else:  # read before and gone (purged or skipped): the disconnect as it is
                self._emit(offset, event, now)

    def release_awaiting(self, below: int, now: float) -> None:
        """Everything read below BELOW has been offered: recorded disconnects still waiting for a media
        message below it go as they are, media messages whose disconnect is below it are done."""
        for media_offset in [m for m in self._awaiting_media if m < below]:
            offset, event = self._awaiting_media.pop(media_offset)
            self._emit(offset, event, now)
        for media_offset in [m for m, (d, _) in self._recorded_media.items() if d < below]:
            del self._recorded_media[media_offset]  # its disconnect was skipped: done with it
            self._discard(media_offset)

    def _merge(
        self, offset: int, event: envelope.BusEvent, media_offset: int, media: envelope.BusEvent, now: float
    ) -> None:
        """Version 1: the disconnect at OFFSET with the media streams of MEDIA merged into its data."""
        streams = envelope.media_streams(media.data)
        data = event.data
        if streams is not None:
            try:
                data = envelope.merge_media_streams(data, streams)
            except (msgspec.DecodeError, msgspec.ValidationError):
                pass
        self._emit(offset, event, now, data=data, merged=(media_offset,))

    def _release_pair(self, disconnected: _Held, media: _Held, now: float) -> None:
        if self.settings.version == 1:
            self._merge(disconnected.offset, disconnected.event, media.offset, media.event, now)
        else:
            self._emit(media.offset, media.event, now)
            self._emit(disconnected.offset, disconnected.event, now)

    def _release_alone(self, held: _Held) -> None:
        """A held event whose partner did not come: a disconnect goes alone, a v1 media message is done."""
        if held.event.event == DISCONNECTED or self.settings.version != 1:
            self._emit(held.offset, held.event, held.deadline)
        else:
            self._discard(held.offset)

    def next_deadline(self) -> float | None:
        deadlines = [
            h.deadline
            for h in (next(iter(self._disconnects.values()), None), next(iter(self._media.values()), None))
            if h is not None
        ]
        return min(deadlines) if deadlines else None

    def expire(self, now: float, read_all: bool = True) -> None:
        """Release every held event whose wait is over (oldest first). When the journal holds
        unread events (READ_ALL false), a wait is also over only once events published after
        it have been read: its partner may be among the unread."""
        for table in (self._disconnects, self._media):
            while table:
                uuid, held = next(iter(table.items()))
                if held.deadline > now or (not read_all and held.horizon > self.latest_published):
                    break
                del table[uuid]
                self._release_alone(held)

    def drop_held(self) -> None:
        """Forget every held event (the publisher stopped; they stay in the journal)."""
        self._disconnects.clear()
        self._media.clear()
        self._recorded_media.clear()
        self._awaiting_media.clear()

    # ------------------------------------------------------------ output

    def _emit(
        self,
        offset: int,
        event: envelope.BusEvent,
        now: float,
        data=None,
        merged: tuple[int, ...] = (),
        published: float | None = None,
    ) -> None:
        # self._post(...), inlined: once per event
        self.seq = seq = self.seq + 1
        s, name = self.settings, event.event
        body = envelope.envelope(s.node, seq, s.version, bytes(event.time), name, event.data if data is None else data)
        self._emit_post(
            Post(
                seq,
                name,
                body,
                f"{self.epoch}-{offset}",
                (offset,) + merged,
                (_published(event) if published is None else published,),
                now,
            )
        )

    def _post(
        self, name: str, offsets: tuple[int, ...], time_json: bytes, data, webhook_id: str, published: float, now: float
    ) -> Post:
        self.seq += 1
        s = self.settings
        body = envelope.envelope(s.node, self.seq, s.version, time_json, name, data)
        return Post(self.seq, name, body, webhook_id, offsets, (published,), now)


def _published(event: envelope.BusEvent) -> float:
    """The publisher's time as a number (0.0 when it is not one)."""
    try:
        return float(event.time)
    except ValueError:
        return 0.0


class Batcher:
    """Bulk mode: gathers Posts into `eventsink_bulk` Posts, full or when the oldest waited the interval."""

    def __init__(
        self,
        max_events: int,
        interval: float,
        version: int,
        emit: Callable[[Post], None],
        *,
        wall_clock: Callable[[], float] = _time.time,
    ):
        self.wall_clock = wall_clock  # the `time` of a bulk envelope
        self.max_events = max_events
        self.interval = interval
        self.version = version
        self._emit = emit
        self._pending: list[Post] = []

    def __len__(self) -> int:
        return len(self._pending)

    def configure(self, max_events: int, interval: float, version: int) -> None:
        self.max_events, self.interval, self.version = max_events, interval, version

    def add(self, post: Post) -> None:
        self._pending.append(post)
        if len(self._pending) >= self.max_events:
            self.flush()

    def next_deadline(self) -> float | None:
        return self._pending[0].entered + self.interval if self._pending else None

    def tick(self, now: float) -> None:
        if self._pending and now >= self._pending[0].entered + self.interval:
            self.flush()

    def flush(self, wall: float | None = None) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.max_events], self._pending[self.max_events :]
            self._emit(wrap(batch, self.version, self.wall_clock() if wall is None else wall))

    def drop(self) -> None:
        self._pending = []


def wrap(batch: list[Post], version: int, wall: float | None = None, webhook_id: str | None = None) -> Post:
    """One eventsink_bulk Post of BATCH (complete envelopes, each with its own seq), under WEBHOOK_ID
    (default: the first one's id + the count, which is what a record re-forms: sinks/envelope_book.py)."""
    first = batch[0]
    offsets = tuple(offset for p in batch for offset in p.offsets)
    times = tuple(t for p in batch for t in p.times)
    body = envelope.bulk(version, _time.time() if wall is None else wall, [p.body for p in batch])
    if webhook_id is None:
        webhook_id = f"{first.webhook_id}+{len(batch)}"
    return Post(first.seq, AgentEvent.BULK, body, webhook_id, offsets, times, first.entered, parts=tuple(batch))

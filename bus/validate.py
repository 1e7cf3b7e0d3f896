"""Validation of one bus message (two frames: topic, JSON object): accept it, or name the reason it is rejected.

A bus message is two frames: the event name in UTF-8 (the ZeroMQ topic) and a
JSON object `{"event": NAME, "time": UNIX_FLOAT, "data": {...}}` whose fields
and types are the types of bus/events.py; a numbering client adds a third
frame of NUMBER_BYTES (publisher id, sequence: bus/numbering.py), any other
third frame is `frame_count`. `Validator.check` answers
`Accepted(topic, payload, number)` (payload: the original bytes, forwarded
unchanged; number: the third frame, or None) or `Rejected(reason, detail)`, with `reason` one of
docs/internals.md's labels and `detail` a short human sentence (never the whole payload).

Fast path: a valid message costs one typed msgspec decode with the topic's
own decoder plus one orjson parse. The second parse is the guarantee that an
accepted payload is valid for orjson, which workers use: msgspec skips unknown
fields without checking everything orjson checks (invalid UTF-8 or lone
surrogate escapes in skipped strings, numbers beyond double range, nesting
beyond orjson's depth limit). Only a failure takes the slow path, which
classifies the reason in a fixed order: frame_count, too_large, invalid_utf8,
invalid_json, not_object, reserved_event, unknown_event, topic_mismatch,
missing_field, wrong_type.

`RejectLog` counts the rejects per reason (the broker's `rejected` figures) and
logs one line per reason per minute on `eventsink.bus`.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import msgspec
import orjson

from bus.events import EVENT_DATA_TYPES, EVENT_MESSAGE_TYPES, required_data_field
from bus.numbering import NUMBER_BYTES
from common.logs import RateLimited, suppressed_note
from common.vocabulary import RESERVED_PREFIX, RejectReason

DETAIL_MAX = 160  # characters of a detail string
NAME_MAX = 60  # characters of a foreign name quoted in a detail


class Accepted(NamedTuple):
    topic: str
    payload: bytes
    number: bytes | None = None  # the third frame of a numbering client (bus/numbering.py)


class Rejected(NamedTuple):
    reason: RejectReason
    detail: str


def _quote(value: object) -> str:
    text = repr(value)
    return text if len(text) <= NAME_MAX else text[: NAME_MAX - 3] + "..."


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 3] + "..."


class Validator:
    """Checks bus messages against the frame rules above and the types of bus/events.py; reusable, not thread-safe."""

    def __init__(self, max_message_bytes: int):
        self.max_message_bytes = int(max_message_bytes)
        self._decoders = {event: msgspec.json.Decoder(tp) for event, tp in EVENT_MESSAGE_TYPES.items()}

    def check(self, frames: list[bytes]) -> Accepted | Rejected:
        number = None
        if len(frames) != 2:
            if len(frames) != 3 or len(frames[2]) != NUMBER_BYTES:
                return Rejected(
                    RejectReason.FRAME_COUNT,
                    f"{len(frames)} frames (expected 2: event name, JSON payload; "
                    f"or 3 with a {NUMBER_BYTES}-byte number)",
                )
            number = bytes(frames[2])
        topic_bytes, payload = bytes(frames[0]), bytes(frames[1])
        if len(payload) > self.max_message_bytes:
            return Rejected(RejectReason.TOO_LARGE, f"payload of {len(payload)} bytes exceeds {self.max_message_bytes}")
        try:
            topic = topic_bytes.decode("utf-8")
        except UnicodeDecodeError:
            return Rejected(RejectReason.INVALID_UTF8, "topic frame is not valid UTF-8")
        decoder = self._decoders.get(topic)
        if decoder is not None:
            try:
                decoder.decode(payload)
                orjson.loads(payload)  # what workers parse: strict UTF-8, surrogates, depth, number range
                return Accepted(topic, payload, number)
            except Exception:
                pass
        return self._classify(topic, payload)

    def _classify(self, topic: str, payload: bytes) -> Rejected:
        """The slow path: why PAYLOAD under TOPIC is not a valid bus message."""
        doc = _json_object(payload)
        if isinstance(doc, Rejected):
            return doc
        return _envelope_fault(topic, doc) or self._typed_fault(topic, payload)

    def _typed_fault(self, topic: str, payload: bytes) -> Rejected:
        """What the topic's typed decode says of a payload whose envelope is right."""
        try:
            self._decoders[topic].decode(payload)
        except msgspec.ValidationError as exc:
            message = str(exc)
            reason = (
                RejectReason.MISSING_FIELD
                if message.startswith("Object missing required field")
                else RejectReason.WRONG_TYPE
            )
            return Rejected(reason, _short(message))
        except RecursionError:
            return Rejected(RejectReason.INVALID_JSON, "payload is nested too deeply")
        except Exception as exc:  # msgspec and orjson disagree: keep it out of the journal
            return Rejected(RejectReason.INVALID_JSON, _short(f"payload is not JSON: {exc}"))
        return Rejected(RejectReason.INVALID_JSON, "payload could not be decoded")  # defensive: fast path disagreed


def _json_object(payload: bytes) -> dict | Rejected:
    """PAYLOAD as a JSON object, or why it is not one (UTF-8, JSON, object: in that order)."""
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(RejectReason.INVALID_UTF8, f"payload is not valid UTF-8 (byte {exc.start})")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return Rejected(RejectReason.INVALID_JSON, _short(f"payload is not JSON: {exc}"))
    if not isinstance(doc, dict):
        return Rejected(RejectReason.NOT_OBJECT, f"payload is a JSON {type(doc).__name__}, not an object")
    return doc


def _envelope_fault(topic: str, doc: dict) -> Rejected | None:
    """What is wrong with the envelope of DOC under TOPIC (names, event, time, data's key field); None: nothing."""
    event = doc.get("event")
    if topic.startswith(RESERVED_PREFIX):
        return Rejected(
            RejectReason.RESERVED_EVENT, f"topic {_quote(topic)} is made by the agent, not taken from the bus"
        )
    if isinstance(event, str) and event.startswith(RESERVED_PREFIX):
        return Rejected(
            RejectReason.RESERVED_EVENT, f"event {_quote(event)} is made by the agent, not taken from the bus"
        )
    if topic not in EVENT_DATA_TYPES:
        return Rejected(RejectReason.UNKNOWN_EVENT, f"topic {_quote(topic)} is not a bus event")
    if "event" not in doc:
        return Rejected(RejectReason.MISSING_FIELD, "payload has no 'event'")
    if not isinstance(event, str):
        return Rejected(RejectReason.WRONG_TYPE, f"'event' must be a string, not {type(event).__name__}")
    if event != topic:
        return Rejected(RejectReason.TOPIC_MISMATCH, f"topic {_quote(topic)} but event {_quote(event)}")
    for key in ("time", "data"):
        if key not in doc:
            return Rejected(RejectReason.MISSING_FIELD, f"payload has no {key!r}")
    data = doc["data"]
    if isinstance(data, dict):
        required = required_data_field(topic)
        if required not in data:
            return Rejected(RejectReason.MISSING_FIELD, f"data has no {required!r} (required for {topic})")
    return None


REJECT_LOG_INTERVAL = 60.0  # s between two log lines for one reject reason
_log = logging.getLogger("eventsink.bus")


class RejectLog:
    """Counts rejects per reason; logs one line per reason per REJECT_LOG_INTERVAL with the count suppressed since."""

    def __init__(self) -> None:
        self.counts: dict[RejectReason, int] = {}
        self.total = 0
        self._rate = RateLimited(REJECT_LOG_INTERVAL)  # one kind per reason

    def reject(self, reason: RejectReason, detail: str, n: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + n
        self.total += n
        suppressed = self._rate.allow(reason, n)
        if suppressed is not None:
            more = suppressed_note(suppressed, "more rejected for this reason")
            _log.warning("rejected bus message: %s: %s%s", reason, detail, more)

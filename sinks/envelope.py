"""Envelope bytes: what one POST body looks like (`{"node", "seq",
"version", "time", "event", "data"}`; `eventsink-agent schema` documents it).

Owns the decoding of a bus payload into its parts and the byte-level assembly of
envelopes, without re-parsing `data`: the publisher's `time` and `data` bytes are
spliced into the envelope as they came (unknown fields, number formats and all).
Also the version 1 merge of `media_streams` into `participant_disconnected`, the
lifecycle envelopes and the `eventsink_bulk` wrapper.
"""

from __future__ import annotations

import msgspec

from common.vocabulary import AgentEvent

BULK_NODE = b'"127.0.0.1"'


class BusEvent(msgspec.Struct):
    """A bus payload `{"event", "time", "data"}`, with time and data kept as raw JSON."""

    event: str
    time: msgspec.Raw
    data: msgspec.Raw


class _Participant(msgspec.Struct):
    uuid: str


_bus_decoder = msgspec.json.Decoder(BusEvent)
_participant_decoder = msgspec.json.Decoder(_Participant)
_object_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_encoder = msgspec.json.Encoder()
_names: dict[str, bytes] = {}


def decode(payload: bytes) -> BusEvent:
    """The parts of a bus payload; raises msgspec.DecodeError (or ValueError) when it is not one."""
    event = _bus_decoder.decode(payload)
    if memoryview(event.data)[:1] != b"{":
        raise ValueError("data is not a JSON object")
    return event


def participant_uuid(data: msgspec.Raw | bytes) -> str | None:
    """`data.uuid` of a participant event, None when absent or not a string."""
    try:
        return _participant_decoder.decode(data).uuid
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def media_streams(data: msgspec.Raw | bytes) -> bytes | None:
    """The raw `media_streams` value of a media message's data, None when it has none."""
    try:
        raw = _object_decoder.decode(data).get("media_streams")
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return None if raw is None else bytes(raw)


def merge_media_streams(data: msgspec.Raw | bytes, streams: bytes) -> bytes:
    """DATA (a JSON object) with `media_streams` set to STREAMS; every other value byte-for-byte."""
    fields = _object_decoder.decode(data)
    fields["media_streams"] = msgspec.Raw(streams)
    return _encoder.encode(fields)


def json_string(text: str) -> bytes:
    """TEXT as a JSON string (event names are cached: they repeat)."""
    encoded = _names.get(text)
    if encoded is None:
        encoded = _encoder.encode(text)
        if len(_names) < 256:
            _names[text] = encoded
    return encoded


def json_time(wall: float) -> bytes:
    """A Unix time as a JSON number."""
    return repr(float(wall)).encode()


def envelope(node: bytes, seq: int, version: int, time: bytes, event: str, data: msgspec.Raw | bytes) -> bytes:
    """One envelope `{"node", "seq", "version", "time", "event", "data"}`; NODE, TIME and DATA are JSON bytes."""
    name = _names.get(event) or json_string(event)  # json_string's cache, without its call
    return b'{"node":%b,"seq":%d,"version":%d,"time":%b,"event":%b,"data":%b}' % (node, seq, version, time, name, data)


def bulk(version: int, wall: float, envelopes: list[bytes]) -> bytes:
    """An `eventsink_bulk` envelope holding ENVELOPES (complete envelope bytes) in order."""
    return b'{"event":"%b","node":%b,"seq":0,"version":%d,"time":%b,"data":[%b]}' % (
        AgentEvent.BULK.encode(),
        BULK_NODE,
        version,
        json_time(wall),
        b",".join(envelopes),
    )

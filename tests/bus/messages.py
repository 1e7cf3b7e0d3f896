"""Bus messages for the bus tests: hand-written samples, valid ones and one or more for each reject
reason (the broker's test sends them as the validator's test checks them); hypothesis strategies
derived from bus.events (valid messages, values of a wrong JSON kind); and the check of a message
against the envelope schema of every version that carries its event (bus/schema.py)."""

from __future__ import annotations

import functools

import msgspec.inspect as mi
import orjson
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from bus import schema
from bus.events import EVENT_DATA_TYPES

MAX = 4096  # max_message_bytes of the validator the samples are written for

# The JSON kinds ('number' = a non-integral number).
S, INT, N, B, NULL, ARR, OBJ = "string", "integer", "number", "boolean", "null", "array", "object"


def msg(event: str, data: dict, *, time=1700000000.25, **extra) -> bytes:
    return orjson.dumps({"event": event, "time": time, "data": data, **extra})


# Valid messages of every kind of event, fields of every JSON kind among them.
VALID = [
    (
        "conference_started",
        {"name": "meet.alice", "service_type": "conference", "is_locked": False, "start_time": 1700000000, "tag": ""},
    ),
    ("conference_updated", {"name": "meet.alice", "guests_muted": True, "is_started": True}),
    ("conference_ended", {"name": "meet.alice", "end_time": 1700000100.5}),
    (
        "participant_connected",
        {
            "uuid": "u1",
            "conference": "meet.alice",
            "related_uuids": ["u2"],
            "connect_time": None,
            "rx_bandwidth": 1024,
            "has_media": True,
            "protocol": "WebRTC",
        },
    ),
    ("participant_updated", {"uuid": "u1", "is_muted": True, "connect_time": 1700000000.5}),
    (
        "participant_disconnected",
        {"uuid": "u1", "disconnect_reason": "Call disconnected", "duration": 12, "end_time": 1700000012.0},
    ),
    (
        "participant_media_stream_window",
        {
            "uuid": "u1",
            "call_quality_was": "1_good",
            "call_quality_now": "3_bad",
            "packet_loss_history": [
                {
                    "stream_id": "1",
                    "stream_type": "audio",
                    "time": 1.0,
                    "time_delta": 2,
                    "tx_packets_sent": 10,
                    "tx_packets_lost": 0,
                    "rx_packets_received": 9,
                    "rx_packets_lost": 1,
                }
            ],
            "recent_quality": [
                {
                    "time": 1.0,
                    "time_delta": 1.0,
                    "quality": 3,
                    "audio": 2,
                    "video": None,
                    "presentation": None,
                    "applicationsharing": None,
                }
            ],
        },
    ),
    (
        "participant_media_streams_destroyed",
        {
            "uuid": "u1",
            "media_streams": [
                {
                    "stream_id": "0",
                    "stream_type": "video",
                    "node": "10.0.0.1",
                    "start_time": 1,
                    "end_time": 2.5,
                    "rx_codec": "VP8",
                    "tx_resolution": "1280x720",
                    "rx_bitrate": 800,
                    "rx_packets_lost": 3,
                    "rx_fps": 30,
                    "tx_packet_loss": 0.25,
                }
            ],
        },
    ),
]


# (reason, frames): every reason the validator gives (journal_full is the broker's), most of them more than once.
REJECTS = [
    ("frame_count", [b"conference_started"]),
    ("frame_count", [b"conference_started", msg("conference_started", {"name": "x"}), b"extra"]),
    ("frame_count", [b"conference_started", msg("conference_started", {"name": "x"}), b"\x00" * 15]),
    ("frame_count", [b"conference_started", msg("conference_started", {"name": "x"}), b"\x00" * 17]),
    ("frame_count", [b"conference_started", msg("conference_started", {"name": "x"}), b"\x00" * 16, b""]),
    ("frame_count", []),
    ("too_large", [b"conference_started", msg("conference_started", {"name": "x" * MAX})]),
    ("invalid_utf8", [b"conference_\xff", msg("conference_started", {"name": "x"})]),
    ("invalid_utf8", [b"conference_started", b'{"event":"conference_started","time":1,"data":{"name":"\xff"}}']),
    (
        "invalid_utf8",
        [b"conference_started", b'{"event":"conference_started","time":1,"data":{"name":"x","junk":"\xed\xa0\x80"}}'],
    ),
    ("invalid_json", [b"conference_started", b"{not json"]),
    ("invalid_json", [b"conference_started", b""]),
    ("invalid_json", [b"conference_started", msg("conference_started", {"name": "x"}) + b" trailing"]),
    ("invalid_json", [b"conference_started", b'{"event":"conference_started","time":NaN,"data":{"name":"x"}}']),
    (
        "invalid_json",
        [b"conference_started", b'{"event":"conference_started","time":1,"data":{"name":"x","j":"\\ud800"}}'],
    ),
    (
        "invalid_json",
        [
            b"conference_started",
            b'{"event":"conference_started","time":1,"data":{"name":"x","j":' + b"[" * 1000 + b"]" * 1000 + b"}}",
        ],
    ),
    ("not_object", [b"conference_started", b"[1, 2]"]),
    ("not_object", [b"conference_started", b'"conference_started"']),
    ("not_object", [b"conference_started", b"null"]),
    ("unknown_event", [b"conference_exploded", msg("conference_exploded", {"name": "x"})]),
    ("unknown_event", [b"", msg("conference_started", {"name": "x"})]),
    ("reserved_event", [b"eventsink_started", msg("eventsink_started", {})]),
    ("reserved_event", [b"conference_started", msg("eventsink_bulk", {})]),
    ("topic_mismatch", [b"conference_started", msg("conference_ended", {"name": "x"})]),
    ("topic_mismatch", [b"participant_connected", msg("no_such_event", {"uuid": "x"})]),
    ("missing_field", [b"conference_started", orjson.dumps({"time": 1, "data": {"name": "x"}})]),
    ("missing_field", [b"conference_started", orjson.dumps({"event": "conference_started", "data": {"name": "x"}})]),
    ("missing_field", [b"conference_started", orjson.dumps({"event": "conference_started", "time": 1})]),
    ("missing_field", [b"conference_started", msg("conference_started", {"service_type": "conference"})]),
    ("missing_field", [b"participant_updated", msg("participant_updated", {"conference": "x"})]),
    ("missing_field", [b"participant_media_streams_destroyed", msg("participant_media_streams_destroyed", {})]),
    ("wrong_type", [b"conference_started", orjson.dumps({"event": 5, "time": 1, "data": {"name": "x"}})]),
    ("wrong_type", [b"conference_started", msg("conference_started", {"name": "x"}, time="yesterday")]),
    ("wrong_type", [b"conference_started", msg("conference_started", {"name": "x"}, time=True)]),
    ("wrong_type", [b"conference_started", orjson.dumps({"event": "conference_started", "time": 1, "data": ["name"]})]),
    ("wrong_type", [b"conference_started", msg("conference_started", {"name": 7})]),
    ("wrong_type", [b"conference_started", msg("conference_started", {"name": "x", "is_locked": "yes"})]),
    ("wrong_type", [b"conference_started", msg("conference_started", {"name": "x", "start_time": None})]),
    ("wrong_type", [b"participant_connected", msg("participant_connected", {"uuid": "x", "rx_bandwidth": 1.5})]),
    ("wrong_type", [b"participant_connected", msg("participant_connected", {"uuid": "x", "related_uuids": "u2"})]),
    ("wrong_type", [b"participant_connected", msg("participant_connected", {"uuid": "x", "has_media": 1})]),
    (
        "wrong_type",
        [
            b"participant_media_stream_window",
            msg("participant_media_stream_window", {"uuid": "x", "recent_quality": [{"quality": "good"}]}),
        ],
    ),
    (
        "wrong_type",
        [
            b"participant_media_streams_destroyed",
            msg("participant_media_streams_destroyed", {"uuid": "x", "media_streams": [{"rx_bitrate": "fast"}]}),
        ],
    ),
    (
        "wrong_type",
        [
            b"participant_media_streams_destroyed",
            msg("participant_media_streams_destroyed", {"uuid": "x", "media_streams": [3]}),
        ],
    ),
]


@functools.cache
def openapi() -> dict:
    return schema.document("openapi")


@functools.cache
def envelope_validator(version: int, event: str) -> Draft202012Validator:
    """A JSON Schema validator for EVENT's envelope at VERSION, straight from the OpenAPI document."""
    doc = openapi()
    root = {"$ref": f"#/components/schemas/{schema.envelope_name(version, event)}", "components": doc["components"]}
    return Draft202012Validator(root)


def versions_of(event: str) -> list[int]:
    return [v for v in schema.PROTOCOL_VERSIONS if event in schema.events_of(v)]


def as_envelope(message: dict, version: int, seq: int = 1) -> dict:
    """A bus message as a sink of VERSION receives it."""
    return {"node": "10.44.99.2", "seq": seq, "version": version, **message}


def schema_accepts(message: dict) -> bool:
    """True when every version's envelope schema for message['event'] accepts it (False if any rejects)."""
    results = [
        envelope_validator(v, message["event"]).is_valid(as_envelope(message, v)) for v in versions_of(message["event"])
    ]
    assert results, message["event"]
    assert len(set(results)) == 1, f"versions disagree on {message!r:.300}"
    return results[0]


def _unwrap(t):
    while isinstance(t, mi.Metadata):
        t = t.type
    return t


def _kinds(t) -> set[str]:
    """The JSON kinds a msgspec type accepts ('number' = a non-integral number)."""
    t = _unwrap(t)
    if isinstance(t, mi.UnionType):
        return set().union(*(_kinds(x) for x in t.types))
    return {
        mi.StrType: {S},
        mi.IntType: {INT},
        mi.FloatType: {INT, N},
        mi.BoolType: {B},
        mi.NoneType: {NULL},
        mi.ListType: {ARR},
        mi.StructType: {OBJ},
    }[type(t)]


_KIND_VALUES = {
    S: st.text(max_size=8),
    INT: st.integers(-(2**63), 2**63 - 1),
    N: st.floats(allow_nan=False, allow_infinity=False, width=64).filter(lambda x: not x.is_integer()),
    B: st.booleans(),
    NULL: st.none(),
    ARR: st.lists(st.integers(0, 9), max_size=2),
    OBJ: st.dictionaries(st.text(max_size=4), st.integers(0, 9), max_size=2),
}


def valid_value(t) -> st.SearchStrategy:
    """Values a msgspec type (from msgspec.inspect) accepts."""
    t = _unwrap(t)
    if isinstance(t, mi.UnionType):
        return st.one_of([valid_value(x) for x in t.types])
    if isinstance(t, mi.StrType):
        return st.text(max_size=20)
    if isinstance(t, mi.IntType):
        return st.integers(-(2**63), 2**63 - 1)
    if isinstance(t, mi.FloatType):
        return st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.ListType):
        return st.lists(valid_value(t.item_type), max_size=3)
    if isinstance(t, mi.StructType):
        return valid_struct(t)
    raise TypeError(t)


def valid_struct(t: mi.StructType) -> st.SearchStrategy:
    required = {f.encode_name: valid_value(f.type) for f in t.fields if f.required}
    optional = {f.encode_name: valid_value(f.type) for f in t.fields if not f.required}
    return st.fixed_dictionaries(required, optional=optional)


def wrong_value(t) -> st.SearchStrategy:
    """Values of a JSON kind the type does not accept (or lists/objects with such a value inside)."""
    options = [_KIND_VALUES[k] for k in (S, INT, N, B, NULL, ARR, OBJ) if k not in _kinds(t)]
    inner = _unwrap(t)
    if isinstance(inner, mi.UnionType):
        inner = next(_unwrap(x) for x in inner.types if not isinstance(_unwrap(x), mi.NoneType))
    if isinstance(inner, mi.ListType):
        options.append(st.lists(wrong_value(inner.item_type), min_size=1, max_size=2))
    if isinstance(inner, mi.StructType):
        options.append(wrong_struct(inner))
    return st.one_of(options)


def wrong_struct(t: mi.StructType) -> st.SearchStrategy:
    """A valid object of type T with exactly one field (maybe nested) given a wrong value."""

    @st.composite
    def build(draw):
        obj = draw(valid_struct(t))
        field = draw(st.sampled_from(t.fields))
        obj[field.encode_name] = draw(wrong_value(field.type))
        return obj

    return build()


def data_type_info(event: str) -> mi.StructType:
    return mi.type_info(EVENT_DATA_TYPES[event])


bus_events = st.sampled_from(sorted(EVENT_DATA_TYPES))
times = st.floats(0, 4e9, allow_nan=False) | st.integers(0, 2**32)


@st.composite
def valid_message(draw, event: str | None = None) -> dict:
    event = event or draw(bus_events)
    return {"event": event, "time": draw(times), "data": draw(valid_struct(data_type_info(event)))}


def frames_of(message: dict) -> list[bytes]:
    return [message["event"].encode(), orjson.dumps(message)]

"""Fuzzing the broker's Validator (hypothesis): random frames never make it raise.

Whatever arrives on the bus (any frame count, random bytes, invalid UTF-8, 10,000
nested arrays, huge numbers, strings right at the size limit), `Validator.check`
answers `Accepted` or `Rejected` with a known reason; an accepted payload is the
original bytes, parses with orjson (workers parse it) and validates against the
generated schema for its event. `make test` runs a few examples per test;
`FUZZ_EXAMPLES=20000` (make fuzz) runs many.
"""

from __future__ import annotations

import os

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bus.events import EVENT_DATA_TYPES
from bus.validate import Accepted, Rejected, Validator
from common.vocabulary import REJECT_REASONS, RejectReason
from tests.bus.messages import frames_of, schema_accepts, valid_message

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0")) or 150
LIMIT = 64 * 1024  # max_message_bytes of the validator under test
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
BUS_REASONS = set(REJECT_REASONS) - {RejectReason.JOURNAL_FULL}  # journal_full is the broker's, never the validator's

EVENTS = sorted(EVENT_DATA_TYPES)
topics = st.one_of(
    st.sampled_from(EVENTS).map(str.encode),
    st.sampled_from(["eventsink_started", "eventsink_bulk", "conference_exploded", "", "Conference_Started"]).map(
        str.encode
    ),
    st.binary(max_size=40),
)


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(LIMIT)


def check_result(validator: Validator, frames: list[bytes]):
    """Run the validator and assert every invariant that holds for any input; returns the result."""
    result = validator.check(frames)
    assert isinstance(result, (Accepted, Rejected)), result
    if isinstance(result, Rejected):
        assert result.reason in BUS_REASONS, result
        assert isinstance(result.detail, str) and 0 < len(result.detail) <= 200, result
        numbered = len(frames) == 3 and len(frames[2]) == 16
        if len(frames) != 2 and not numbered:
            assert result.reason == "frame_count"
        elif len(frames[1]) > LIMIT:
            assert result.reason == "too_large"
        return result
    assert (len(frames) == 2 or (len(frames) == 3 and len(frames[2]) == 16)) and len(frames[1]) <= LIMIT
    assert result.topic == frames[0].decode("utf-8") and result.payload == frames[1]
    assert result.number == (bytes(frames[2]) if len(frames) == 3 else None)
    doc = orjson.loads(result.payload)  # workers parse accepted payloads with orjson
    assert isinstance(doc, dict) and doc["event"] == result.topic
    assert schema_accepts(doc), f"accepted but not valid for the schema: {result.payload[:300]!r}"
    return result


# ------------------------------------------------------------ raw frames


@FUZZ
@given(frames=st.lists(st.binary(max_size=64), max_size=5))
def test_random_frames(validator, frames):
    check_result(validator, frames)


@FUZZ
@given(topic=topics, payload=st.binary(max_size=200))
def test_random_payload_bytes(validator, topic, payload):
    assert isinstance(check_result(validator, [topic, payload]), Rejected) or payload.startswith(b"{")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


@FUZZ
@given(
    topic=topics,
    doc=st.dictionaries(st.sampled_from(["event", "time", "data", "x"]), json_values, max_size=4),
    event=st.sampled_from(EVENTS),
    data=st.dictionaries(
        st.sampled_from(
            [
                "name",
                "uuid",
                "tag",
                "is_locked",
                "rx_bandwidth",
                "connect_time",
                "media_streams",
                "recent_quality",
                "zz",
            ]
        ),
        json_values,
        max_size=4,
    ),
)
def test_random_json_objects(validator, topic, doc, event, data):
    check_result(validator, [topic, orjson.dumps(doc)])
    check_result(validator, [event.encode(), orjson.dumps({"event": event, "time": 1.0, "data": data})])


# ------------------------------------------------------------ damaged valid messages


@FUZZ
@given(
    message=valid_message(),
    where=st.integers(0, 10**6),
    bad=st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80", b"\xf8\x88\x80\x80\x80"]),
)
def test_invalid_utf8_anywhere(validator, message, where, bad):
    topic, payload = frames_of(message)
    at = where % (len(payload) + 1)
    result = check_result(validator, [topic, payload[:at] + bad + payload[at:]])
    assert isinstance(result, Rejected) and result.reason in ("invalid_utf8", "too_large"), result
    assert check_result(validator, [bad + topic, payload]).reason == "invalid_utf8"


@FUZZ
@given(message=valid_message(), cut=st.integers(0, 10**6), flip=st.integers(0, 255))
def test_truncated_and_flipped(validator, message, cut, flip):
    topic, payload = frames_of(message)
    assert isinstance(check_result(validator, [topic, payload]), Accepted)
    at = cut % len(payload)
    check_result(validator, [topic, payload[:at]])
    check_result(validator, [topic, payload[:at] + bytes([flip]) + payload[at + 1 :]])


# ------------------------------------------------------------ extremes


def nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    if kind == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b'[{"a":' * depth + b"1" + b"}]" * depth


@FUZZ
@given(
    depth=st.sampled_from([1, 2, 63, 64, 127, 128, 255, 256, 511, 512, 1000, 1023, 1024, 1025, 4096, 10_000])
    | st.integers(1, 10_000),
    kind=st.sampled_from(["array", "object", "mixed"]),
    where=st.sampled_from(["extra", "typed", "data", "payload", "time"]),
)
@example(depth=10_000, kind="array", where="extra")
@example(depth=1023, kind="array", where="extra")  # msgspec took it, orjson (the workers' parser) does not
@example(depth=10_000, kind="array", where="payload")
def test_deep_nesting(validator, depth, kind, where):
    deep = nested(depth, kind)
    payload = {
        "extra": b'{"event":"participant_connected","time":1,"data":{"uuid":"u","x":' + deep + b"}}",
        "typed": b'{"event":"participant_connected","time":1,"data":{"uuid":"u","related_uuids":' + deep + b"}}",
        "data": b'{"event":"participant_connected","time":1,"data":' + deep + b"}",
        "payload": deep,
        "time": b'{"event":"participant_connected","time":' + deep + b',"data":{"uuid":"u"}}',
    }[where]
    check_result(validator, [b"participant_connected", payload])


number_texts = st.one_of(
    st.integers(1, 5000).map(lambda n: "9" * n),
    st.integers(1, 5000).map(lambda n: "-" + "1" * n),
    st.integers(300, 100_000).map(lambda e: f"1e{e}"),
    st.integers(300, 100_000).map(lambda e: f"-2.5E+{e}"),
    st.integers(300, 100_000).map(lambda e: f"1e-{e}"),
    st.sampled_from(
        [
            "18446744073709551616",
            "9223372036854775808",
            "-9223372036854775809",
            "1.7976931348623157e308",
            "1.8e308",
            "-0",
            "0.0e0",
            "NaN",
            "Infinity",
            "-Infinity",
            "1.",
            ".5",
            "01",
            "0x10",
        ]
    ),
)


@FUZZ
@given(
    number=number_texts, where=st.sampled_from(["time", "int_field", "float_field", "extra", "nested_int", "quality"])
)
@example(number="1e999", where="extra")
@example(number="9" * 400, where="extra")
def test_huge_and_odd_numbers(validator, number, where):
    n = number.encode()
    payload = {
        "time": b'{"event":"participant_connected","time":' + n + b',"data":{"uuid":"u"}}',
        "int_field": b'{"event":"participant_connected","time":1,"data":{"uuid":"u","rx_bandwidth":' + n + b"}}",
        "float_field": b'{"event":"participant_connected","time":1,"data":{"uuid":"u","connect_time":' + n + b"}}",
        "extra": b'{"event":"participant_connected","time":1,"data":{"uuid":"u","x":' + n + b"}}",
        "nested_int": b'{"event":"participant_media_streams_destroyed","time":1,'
        b'"data":{"uuid":"u","media_streams":[{"rx_bitrate":' + n + b"}]}}",
        "quality": b'{"event":"participant_media_stream_window","time":1,"data":{"uuid":"u","recent_quality":[{"audio":'
        + n
        + b"}]}}",
    }[where]
    topic = payload.split(b'"')[3]  # the event name
    check_result(validator, [topic, payload])


@FUZZ
@given(
    delta=st.integers(-4, 4),
    char=st.sampled_from(["a", "\u00e9", "\u20ac", "\U0001f600", "\\", '"', "\n", "\x00"]),
    field=st.sampled_from(["name", "tag", "extra"]),
)
def test_huge_strings_at_the_limit(validator, delta, char, field):
    base = orjson.dumps({"event": "conference_started", "time": 1.0, "data": {"name": "n", field: ""}})
    unit = len(orjson.dumps(char)) - 2  # bytes one character takes in the JSON text
    count = max(0, (LIMIT - len(base)) // unit + delta)
    payload = orjson.dumps({"event": "conference_started", "time": 1.0, "data": {"name": "n", field: char * count}})
    result = check_result(validator, [b"conference_started", payload])
    assert isinstance(result, Accepted) == (len(payload) <= LIMIT), (len(payload), result)

"""Validation of bus messages: every reject reason, valid messages, extra fields, and the event types."""

from __future__ import annotations

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.events import EVENT_DATA_TYPES, EVENT_MESSAGE_TYPES, MediaStream
from bus.validate import Accepted, Rejected, Validator
from common.vocabulary import REJECT_REASONS, RejectReason
from tests.bus.messages import MAX, REJECTS, VALID, msg


def frames(event: str, data: dict, **kw) -> list[bytes]:
    return [event.encode(), msg(event, data, **kw)]


@pytest.fixture(scope="module")
def v() -> Validator:
    return Validator(MAX)


@pytest.mark.parametrize("event,data", VALID, ids=[e for e, _ in VALID])
def test_valid_messages_are_accepted_with_original_bytes(v, event, data):
    fr = frames(event, data)
    result = v.check(fr)
    assert result == Accepted(event, fr[1])
    assert result.payload is not None and result.payload == fr[1]


def test_minimal_and_extra_fields_are_accepted(v):
    assert isinstance(v.check(frames("conference_started", {"name": "x"})), Accepted)
    assert isinstance(v.check(frames("participant_connected", {"uuid": "x"}, time=1700000000)), Accepted)
    fr = [
        b"participant_connected",
        b'{"event":"participant_connected","time":1,"data":{"uuid":"x","brand_new":{"nested":[1,"\xc3\xa9"]},'
        b'"rx_bandwidth":5},"trace":"top-level extra"}',
    ]
    assert v.check(fr) == Accepted("participant_connected", fr[1])
    # a field documented for another event passes as an unknown extra, any type
    assert isinstance(v.check(frames("conference_started", {"name": "x", "end_time": "soon"})), Accepted)
    # nested objects accept unknown fields too
    assert isinstance(
        v.check(
            frames("participant_media_streams_destroyed", {"uuid": "x", "media_streams": [{"future": 1, "rx_fps": 1}]})
        ),
        Accepted,
    )


def test_payload_at_the_limit_is_accepted(v):
    base = msg("conference_started", {"name": ""})
    payload = msg("conference_started", {"name": "x" * (MAX - len(base))})
    assert len(payload) == MAX
    assert isinstance(v.check([b"conference_started", payload]), Accepted)


@pytest.mark.parametrize("reason,fr", REJECTS, ids=[f"{r}-{i}" for i, (r, _) in enumerate(REJECTS)])
def test_rejects_name_the_reason(v, reason, fr):
    result = v.check(fr)
    assert isinstance(result, Rejected), result
    assert result.reason == reason, result
    assert result.reason in REJECT_REASONS
    assert 0 < len(result.detail) <= 160


def test_every_bus_reason_is_covered():
    assert {r for r, _ in REJECTS} == set(REJECT_REASONS) - {RejectReason.JOURNAL_FULL}


def test_detail_never_carries_the_payload(v):
    secret_blob = "S3CRET-" * 200
    for fr in (
        [b"conference_started", msg("conference_started", {"name": 1, "x": secret_blob})],
        [b"conference_started", msg("conference_ended", {"name": secret_blob})],
        [b"nope", msg("nope", {"x": secret_blob})],
        [b"conference_started", (b'{"x": "' + secret_blob.encode() + b'"')],
    ):
        result = v.check(fr)
        assert isinstance(result, Rejected)
        assert "S3CRET-S3CRET-S3CRET" not in result.detail


def test_frames_may_be_memoryviews(v):
    fr = frames("conference_started", {"name": "x"})
    assert v.check([memoryview(fr[0]), memoryview(fr[1])]) == Accepted("conference_started", fr[1])


def test_event_types_cover_the_bus_and_make_a_schema():
    assert set(EVENT_DATA_TYPES) == set(EVENT_MESSAGE_TYPES) and len(EVENT_DATA_TYPES) == 8
    schema = msgspec.json.schema(EVENT_MESSAGE_TYPES["participant_disconnected"])
    data = schema["$defs"]["ParticipantDisconnectedData"]
    assert data["required"] == ["uuid"]
    assert data["properties"]["uuid"]["description"]
    assert "anyOf" in data["properties"]["connect_time"]  # number or null
    assert schema["$defs"]["ParticipantDisconnectedMessage"]["required"] == ["event", "time", "data"]
    assert msgspec.json.encode(MediaStream(rx_fps=1.0)) == b'{"rx_fps":1.0}'  # UNSET fields omitted


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    topic=st.sampled_from(sorted(EVENT_DATA_TYPES) + ["x", "eventsink_started"]),
    event=st.one_of(st.sampled_from(sorted(EVENT_DATA_TYPES)), json_values),
    data=json_values,
    extra=st.binary(max_size=40),
)
def test_fuzz_never_raises_and_accepts_only_valid(topic, event, data, extra):
    validator = Validator(MAX)
    payload = orjson.dumps({"event": event, "time": 1, "data": data}) + extra
    result = validator.check([topic.encode(), payload])
    assert isinstance(result, (Accepted, Rejected))
    if isinstance(result, Accepted):
        doc = orjson.loads(result.payload)
        assert doc["event"] == topic and isinstance(doc["data"], dict)
        msgspec.convert(doc, EVENT_MESSAGE_TYPES[topic])
    else:
        assert result.reason in REJECT_REASONS


def test_a_16_byte_third_frame_is_the_number_and_validated_like_two_frames():
    v = Validator(MAX)
    number = b"\x01" * 8 + (7).to_bytes(8, "big")
    good = [b"conference_started", msg("conference_started", {"name": "x"})]
    assert v.check(good + [number]) == Accepted("conference_started", good[1], number)
    assert v.check(good) == Accepted("conference_started", good[1], None)
    bad = v.check([b"conference_started", msg("conference_started", {}), number])
    assert isinstance(bad, Rejected) and bad.reason == "missing_field"

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

MAX = 4096


def msg(event: str, data: dict, *, time=1700000000.25, **extra) -> bytes:
    return orjson.dumps({"event": event, "time": time, "data": data, **extra})


def frames(event: str, data: dict, **kw) -> list[bytes]:
    return [event.encode(), msg(event, data, **kw)]


@pytest.fixture(scope="module")
def v() -> Validator:
    return Validator(MAX)


VALID = [
    ("conference_started", {"name": "meet.alice", "service_type": "conference", "is_locked": False, "start_time": 1700000000, "tag": ""}),
    ("conference_updated", {"name": "meet.alice", "guests_muted": True, "is_started": True}),
    ("conference_ended", {"name": "meet.alice", "end_time": 1700000100.5}),
    ("participant_connected", {"uuid": "u1", "conference": "meet.alice", "related_uuids": ["u2"], "connect_time": None,
                               "rx_bandwidth": 1024, "has_media": True, "protocol": "WebRTC"}),
    ("participant_updated", {"uuid": "u1", "is_muted": True, "connect_time": 1700000000.5}),
    ("participant_disconnected", {"uuid": "u1", "disconnect_reason": "Call disconnected", "duration": 12, "end_time": 1700000012.0}),
    ("participant_media_stream_window", {
        "uuid": "u1", "call_quality_was": "1_good", "call_quality_now": "3_bad",
        "packet_loss_history": [{"stream_id": "1", "stream_type": "audio", "time": 1.0, "time_delta": 2,
                                 "tx_packets_sent": 10, "tx_packets_lost": 0, "rx_packets_received": 9, "rx_packets_lost": 1}],
        "recent_quality": [{"time": 1.0, "time_delta": 1.0, "quality": 3, "audio": 2, "video": None, "presentation": None,
                            "applicationsharing": None}]}),
    ("participant_media_streams_destroyed", {"uuid": "u1", "media_streams": [
        {"stream_id": "0", "stream_type": "video", "node": "10.0.0.1", "start_time": 1, "end_time": 2.5, "rx_codec": "VP8",
         "tx_resolution": "1280x720", "rx_bitrate": 800, "rx_packets_lost": 3, "rx_fps": 30, "tx_packet_loss": 0.25}]}),
]


@pytest.mark.parametrize("event,data", VALID, ids=[e for e, _ in VALID])
def test_valid_messages_are_accepted_with_original_bytes(v, event, data):
    fr = frames(event, data)
    result = v.check(fr)
    assert result == Accepted(event, fr[1])
    assert result.payload is not None and result.payload == fr[1]


def test_minimal_and_extra_fields_are_accepted(v):
    assert isinstance(v.check(frames("conference_started", {"name": "x"})), Accepted)
    assert isinstance(v.check(frames("participant_connected", {"uuid": "x"}, time=1700000000)), Accepted)
    fr = [b"participant_connected", b'{"event":"participant_connected","time":1,"data":{"uuid":"x","brand_new":{"nested":[1,"\xc3\xa9"]},'
          b'"rx_bandwidth":5},"trace":"top-level extra"}']
    assert v.check(fr) == Accepted("participant_connected", fr[1])
    # a field documented for another event passes as an unknown extra, any type
    assert isinstance(v.check(frames("conference_started", {"name": "x", "end_time": "soon"})), Accepted)
    # nested objects accept unknown fields too
    assert isinstance(v.check(frames("participant_media_streams_destroyed",
                                     {"uuid": "x", "media_streams": [{"future": 1, "rx_fps": 1}]})), Accepted)


def test_payload_at_the_limit_is_accepted(v):
    base = msg("conference_started", {"name": ""})
    payload = msg("conference_started", {"name": "x" * (MAX - len(base))})
    assert len(payload) == MAX
    assert isinstance(v.check([b"conference_started", payload]), Accepted)


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
    ("invalid_utf8", [b"conference_started", b'{"event":"conference_started","time":1,"data":{"name":"x","junk":"\xed\xa0\x80"}}']),
    ("invalid_json", [b"conference_started", b"{not json"]),
    ("invalid_json", [b"conference_started", b""]),
    ("invalid_json", [b"conference_started", msg("conference_started", {"name": "x"}) + b" trailing"]),
    ("invalid_json", [b"conference_started", b'{"event":"conference_started","time":NaN,"data":{"name":"x"}}']),
    ("invalid_json", [b"conference_started", b'{"event":"conference_started","time":1,"data":{"name":"x","j":"\\ud800"}}']),
    ("invalid_json", [b"conference_started", b'{"event":"conference_started","time":1,"data":{"name":"x","j":' + b"[" * 1000 + b"]" * 1000 + b"}}"]),
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
    ("wrong_type", [b"participant_media_stream_window", msg("participant_media_stream_window",
                                                            {"uuid": "x", "recent_quality": [{"quality": "good"}]})]),
    ("wrong_type", [b"participant_media_streams_destroyed", msg("participant_media_streams_destroyed",
                                                                {"uuid": "x", "media_streams": [{"rx_bitrate": "fast"}]})]),
    ("wrong_type", [b"participant_media_streams_destroyed", msg("participant_media_streams_destroyed",
                                                                {"uuid": "x", "media_streams": [3]})]),
]


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
    for fr in ([b"conference_started", msg("conference_started", {"name": 1, "x": secret_blob})],
               [b"conference_started", msg("conference_ended", {"name": secret_blob})],
               [b"nope", msg("nope", {"x": secret_blob})],
               [b"conference_started", (b'{"x": "' + secret_blob.encode() + b'"')]):
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
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(topic=st.sampled_from(sorted(EVENT_DATA_TYPES) + ["x", "eventsink_started"]), event=st.one_of(st.sampled_from(sorted(EVENT_DATA_TYPES)), json_values),
       data=json_values, extra=st.binary(max_size=40))
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

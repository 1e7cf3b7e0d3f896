"""Envelope bytes: the publisher's time and data pass through byte for byte."""

import json

import msgspec
import pytest

from sinks import envelope

NODE = envelope.json_string("10.44.99.2")


def test_envelope_splices_time_and_data_unchanged():
    payload = (
        b'{"event":"conference_started","time":1700000000.123456789012,'
        b'"data":{"name":"W\\u00e9ekly","x_new":{"deep":[1e5,null,2.50]},"tag":""}}'
    )
    ev = envelope.decode(payload)
    body = envelope.envelope(NODE, 7, 2, bytes(ev.time), ev.event, ev.data)
    assert body == (
        b'{"node":"10.44.99.2","seq":7,"version":2,"time":1700000000.123456789012,'
        b'"event":"conference_started","data":{"name":"W\\u00e9ekly","x_new":{"deep":[1e5,null,2.50]},"tag":""}}'
    )
    doc = json.loads(body)
    assert list(doc) == ["node", "seq", "version", "time", "event", "data"]
    assert doc["data"]["name"] == "W\u00e9ekly"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1,2]",
        b'{"event":"x","time":1}',
        b'{"event":"x","time":1,"data":[1]}',
        b'{"event":5,"time":1,"data":{}}',
    ],
)
def test_decode_rejects_what_is_not_a_bus_event(payload):
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError, ValueError)):
        envelope.decode(payload)


def test_merge_media_streams_keeps_every_other_value_and_replaces_an_existing_key():
    data = b'{"uuid":"a","duration":12.50,"x":{"y":[1e3]},"media_streams":"old"}'
    merged = envelope.merge_media_streams(data, b'[{"stream_id":"0","rx_packet_loss":0.0}]')
    assert (
        merged
        == b'{"uuid":"a","duration":12.50,"x":{"y":[1e3]},"media_streams":[{"stream_id":"0","rx_packet_loss":0.0}]}'
    )
    assert envelope.merge_media_streams(b"{}", b"[]") == b'{"media_streams":[]}'


def test_media_streams_and_uuid_lookups():
    assert envelope.media_streams(b'{"uuid":"a","media_streams":[1, 2]}') == b"[1, 2]"
    assert envelope.media_streams(b'{"uuid":"a"}') is None
    assert envelope.participant_uuid(b'{"uuid":"p-1","x":1}') == "p-1"
    assert envelope.participant_uuid(b'{"uuid":5}') is None
    assert envelope.participant_uuid(b'{"name":"c"}') is None


def test_bulk_wraps_complete_envelopes():
    inner = [envelope.envelope(NODE, s, 1, b"1.5", "eventsink_started", b"{}") for s in (1, 2)]
    body = envelope.bulk(1, 1700000000.5, inner)
    doc = json.loads(body)
    assert doc["event"] == "eventsink_bulk" and doc["node"] == "127.0.0.1" and doc["seq"] == 0
    assert doc["version"] == 1 and doc["time"] == 1700000000.5
    assert [e["seq"] for e in doc["data"]] == [1, 2]
    assert all(e["node"] == "10.44.99.2" for e in doc["data"])

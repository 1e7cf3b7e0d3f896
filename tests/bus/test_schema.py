"""The event schema document (bus/schema.py): valid OpenAPI 3.1 and Swagger 2.0, complete
against docs/bus.md, docs/delivery.md and docs/events.md, and in agreement with the broker's Validator on
generated messages (accepted ones validate against the schema, ones rejected for a
missing or wrong-typed field do not).

The hypothesis strategies it draws messages from are in tests/bus/messages.py (the fuzz tests share them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import OpenAPIV2SpecValidator, OpenAPIV31SpecValidator, validate

from bus import schema
from bus.events import EVENT_DATA_TYPES, EVENT_MESSAGE_TYPES, required_data_field
from bus.validate import Accepted, Rejected, Validator
from common.vocabulary import SCHEMA_FORMATS
from tests.bus.messages import (
    ARR,
    INT,
    NULL,
    B,
    N,
    S,
    as_envelope,
    bus_events,
    data_type_info,
    envelope_validator,
    frames_of,
    openapi,
    schema_accepts,
    times,
    valid_message,
    versions_of,
    wrong_struct,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0")) or 60  # per generated-case test in `make test`

# ------------------------------------------------------------ docs/events.md, as a table

CONFERENCE_FIELDS = {
    "name": {S},
    "service_type": {S},
    "is_locked": {B},
    "guests_muted": {B},
    "is_started": {B},
    "start_time": {N},
    "tag": {S},
}
PARTICIPANT_FIELDS = {
    "uuid": {S},
    "conference": {S},
    "call_id": {S},
    "conversation_id": {S},
    "related_uuids": {ARR},
    "call_direction": {S},
    "protocol": {S},
    "role": {S},
    "service_type": {S},
    "display_name": {S},
    "source_alias": {S},
    "destination_alias": {S},
    "remote_address": {S},
    "vendor": {S},
    "media_node": {S},
    "signalling_node": {S},
    "proxy_node": {S},
    "system_location": {S},
    "call_tag": {S},
    "service_tag": {S},
    "encryption": {S},
    "connect_time": {N, NULL},
    "rx_bandwidth": {INT},
    "tx_bandwidth": {INT},
    "has_media": {B},
    "is_muted": {B},
    "is_client_muted": {B},
    "is_presenting": {B},
    "is_streaming": {B},
    "is_idp_authenticated": {B},
}
MEDIA_STREAM_FIELDS = {
    "stream_id": {S},
    "stream_type": {S},
    "node": {S},
    "start_time": {N},
    "end_time": {N},
    "rx_codec": {S},
    "tx_codec": {S},
    "rx_resolution": {S},
    "tx_resolution": {S},
    "rx_bitrate": {INT},
    "tx_bitrate": {INT},
    "rx_packets_received": {INT},
    "rx_packets_lost": {INT},
    "tx_packets_sent": {INT},
    "tx_packets_lost": {INT},
    "rx_fps": {N},
    "tx_fps": {N},
    "rx_packet_loss": {N},
    "tx_packet_loss": {N},
}
PACKET_LOSS_FIELDS = {
    "stream_id": {S},
    "stream_type": {S},
    "time": {N},
    "time_delta": {N},
    "tx_packets_sent": {INT},
    "tx_packets_lost": {INT},
    "rx_packets_received": {INT},
    "rx_packets_lost": {INT},
}
QUALITY_FIELDS = {
    "time": {N},
    "time_delta": {N},
    "quality": {INT, NULL},
    "audio": {INT, NULL},
    "video": {INT, NULL},
    "presentation": {INT, NULL},
    "applicationsharing": {INT, NULL},
}
EVENTS_MD = {
    "conference_started": CONFERENCE_FIELDS,
    "conference_updated": CONFERENCE_FIELDS,
    "conference_ended": {**CONFERENCE_FIELDS, "end_time": {N}},
    "participant_connected": PARTICIPANT_FIELDS,
    "participant_updated": PARTICIPANT_FIELDS,
    "participant_disconnected": {
        **PARTICIPANT_FIELDS,
        "disconnect_reason": {S},
        "duration": {N},
        "end_time": {N},
        "media_streams": {ARR},
    },
    "participant_media_stream_window": {
        "uuid": {S},
        "call_quality_was": {S},
        "call_quality_now": {S},
        "packet_loss_history": {ARR},
        "recent_quality": {ARR},
    },
    "participant_media_streams_destroyed": {"uuid": {S}, "media_streams": {ARR}},
}
NESTED_MD = {  # (event, list field) -> fields of its items
    ("participant_disconnected", "media_streams"): MEDIA_STREAM_FIELDS,
    ("participant_media_streams_destroyed", "media_streams"): MEDIA_STREAM_FIELDS,
    ("participant_media_stream_window", "packet_loss_history"): PACKET_LOSS_FIELDS,
    ("participant_media_stream_window", "recent_quality"): QUALITY_FIELDS,
}
V1_EVENTS = {
    "conference_started",
    "conference_updated",
    "conference_ended",
    "participant_connected",
    "participant_updated",
    "participant_disconnected",
    "eventsink_started",
    "eventsink_updated",
    "eventsink_stopped",
    "eventsink_bulk",
}
V2_EVENTS = (V1_EVENTS - {"eventsink_stopped"}) | {
    "participant_media_stream_window",
    "participant_media_streams_destroyed",
    "eventsink_ended",
}
HEADERS = {"webhook-id", "webhook-timestamp", "webhook-signature", "User-Agent"}


# ------------------------------------------------------------ the documents


def test_openapi_document_is_valid_openapi_3_1():
    doc = json.loads(schema.render("openapi"))
    assert doc["openapi"].startswith("3.1")
    validate(doc, cls=OpenAPIV31SpecValidator)
    assert doc == schema.document("openapi")


def test_swagger_document_is_valid_swagger_2_0():
    doc = json.loads(schema.render("swagger"))
    assert doc["swagger"] == "2.0"
    validate(doc, cls=OpenAPIV2SpecValidator)
    text = json.dumps(doc)
    assert '"null"' not in text and "anyOf" not in text and "oneOf" not in text and "webhooks" not in doc


def test_unknown_format_is_a_plain_value_error():
    with pytest.raises(ValueError, match="unknown schema format"):
        schema.render("yaml")


def test_one_webhook_per_event_per_version_with_headers_and_basic_auth():
    doc = openapi()
    hooks = doc["webhooks"]
    expected = {f"v1/{e}" for e in V1_EVENTS} | {f"v2/{e}" for e in V2_EVENTS}
    assert set(hooks) == expected
    params = doc["components"]["parameters"]
    for key, hook in hooks.items():
        version, event = int(key[1]), key[3:]
        post = hook["post"]
        assert post["x-event"] == event and post["x-protocol-version"] == version
        ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{schema.envelope_name(version, event)}"
        names = {params[p["$ref"].rsplit("/", 1)[1]]["name"] for p in post["parameters"]}
        assert names == HEADERS
        assert {"basicAuth": []} in post["security"] and {} in post["security"]
        assert set(post["responses"]) == {"2XX", "default"}
    assert doc["components"]["securitySchemes"]["basicAuth"] == {
        "type": "http",
        "scheme": "basic",
        "description": doc["components"]["securitySchemes"]["basicAuth"]["description"],
    }
    assert "Authorization" in doc["components"]["securitySchemes"]["basicAuth"]["description"]
    assert params["WebhookId"]["required"] is True and params["WebhookSignature"]["required"] is False


def test_swagger_has_the_same_operations_as_paths():
    doc = schema.document("swagger")
    assert set(doc["paths"]) == {"/" + k for k in openapi()["webhooks"]}
    assert set(doc["definitions"]) == set(openapi()["components"]["schemas"])
    for item in doc["paths"].values():
        post = item["post"]
        body = [p for p in post["parameters"] if p.get("in") == "body"]
        assert len(body) == 1 and body[0]["schema"]["$ref"] == "#/definitions/" + schema.envelope_name(
            post["x-protocol-version"], post["x-event"]
        )
        headers = {doc["parameters"][p["$ref"].rsplit("/", 1)[1]]["name"] for p in post["parameters"] if "$ref" in p}
        assert headers == HEADERS
    assert doc["securityDefinitions"]["basicAuth"]["type"] == "basic"


def _resolve(doc: dict, node: dict, prefix: str) -> dict:
    while True:
        if "$ref" in node:
            node = doc_lookup(doc, node["$ref"], prefix)
        elif len(node.get("allOf", ())) == 1:
            node = {**{k: v for k, v in node.items() if k != "allOf"}, **_resolve(doc, node["allOf"][0], prefix)}
        else:
            return node


def doc_lookup(doc: dict, ref: str, prefix: str) -> dict:
    assert ref.startswith(prefix), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _json_kinds(doc: dict, prop: dict, prefix: str, swagger: bool) -> set[str]:
    prop = _resolve(doc, prop, prefix)
    if "anyOf" in prop:
        return set().union(*(_json_kinds(doc, p, prefix, swagger) for p in prop["anyOf"]))
    kinds = {prop["type"]}
    if swagger and prop.get("x-nullable"):
        kinds.add(NULL)
    return kinds


@pytest.mark.parametrize("fmt", SCHEMA_FORMATS)
def test_every_events_md_field_appears_with_its_type(fmt):
    doc = schema.document(fmt)
    swagger = fmt == "swagger"
    defs, prefix = (
        (doc["definitions"], "#/definitions/") if swagger else (doc["components"]["schemas"], "#/components/schemas/")
    )
    for event, fields in EVENTS_MD.items():
        for version in versions_of(event):
            env = defs[schema.envelope_name(version, event)]
            assert env["properties"]["event"]["enum"] == [event]
            assert env["properties"]["version"]["enum"] == [version]
            data = _resolve(doc, env["properties"]["data"], prefix)
            assert data["additionalProperties"] is True
            assert data["required"] == [required_data_field(event)]
            for name, kinds in fields.items():
                assert name in data["properties"], (event, name)
                got = _json_kinds(doc, data["properties"][name], prefix, swagger)
                assert got == kinds, (fmt, event, name, got)
                assert data["properties"][name].get("description"), (event, name)
            for (ev, list_field), item_fields in NESTED_MD.items():
                if ev != event:
                    continue
                items = _resolve(doc, _resolve(doc, data["properties"][list_field], prefix)["items"], prefix)
                assert items["additionalProperties"] is True
                for name, kinds in item_fields.items():
                    assert _json_kinds(doc, items["properties"][name], prefix, swagger) == kinds, (
                        event,
                        list_field,
                        name,
                    )


@pytest.mark.parametrize("fmt", SCHEMA_FORMATS)
def test_envelope_bulk_and_lifecycle_schemas(fmt):
    doc = schema.document(fmt)
    defs = doc["definitions"] if fmt == "swagger" else doc["components"]["schemas"]
    for version in schema.PROTOCOL_VERSIONS:
        for event in schema.events_of(version):
            env = defs[schema.envelope_name(version, event)]
            assert env["required"] == ["node", "seq", "version", "time", "event", "data"]
            assert env["additionalProperties"] is True
            for key in ("node", "seq", "time"):
                assert len(env["properties"][key]["description"]) > 40
        bulk = defs[schema.envelope_name(version, "eventsink_bulk")]["properties"]
        assert bulk["node"]["enum"] == ["127.0.0.1"] and bulk["seq"]["enum"] == [0]
        assert bulk["data"]["type"] == "array"
        stop = "eventsink_stopped" if version == 1 else "eventsink_ended"
        for event in ("eventsink_started", "eventsink_updated", stop):
            data = defs[schema.envelope_name(version, event)]["properties"]["data"]
            assert "LifecycleData" in json.dumps(data)
    seq = defs["EventEnvelope"]["properties"]["seq"]["description"]
    assert "starts again at 1" in seq and "restart" in seq and "crash" in seq
    assert "conference process" in defs["EventEnvelope"]["properties"]["time"]["description"]
    quality = defs["QualitySample"]["properties"]["audio"]
    assert all(w in json.dumps(quality) for w in ("0 unknown", "1 good", "2 ok", "3 bad", "4 terrible", "null"))


def test_data_schemas_are_msgspecs_own():
    """The document's data schemas are msgspec's output for bus.events, only opened to extra fields
    (and without the empty `required` lists Swagger 2.0 forbids)."""
    _, generated = msgspec.json.schema_components(
        list(EVENT_DATA_TYPES.values()), ref_template="#/components/schemas/{name}"
    )
    components = openapi()["components"]["schemas"]
    for name, gen in generated.items():
        mine = dict(components[name])
        assert mine.pop("additionalProperties") is True
        if gen.get("required") == []:
            del gen["required"]
        assert mine == gen, name


def test_cli_prints_the_same_documents():
    for fmt in SCHEMA_FORMATS:
        out = subprocess.run(
            [sys.executable, "-m", "agent", "schema", "--format", fmt],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == schema.document(fmt)


# ------------------------------------------------------------ schema and Validator agree


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(1 << 20)


FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(message=valid_message())
def test_accepted_messages_validate_against_the_schema(validator, message):
    assert isinstance(validator.check(frames_of(message)), Accepted)
    assert schema_accepts(message)


@FUZZ
@given(message=valid_message())
def test_missing_required_field_is_rejected_by_both(validator, message):
    required = required_data_field(message["event"])
    del message["data"][required]
    result = validator.check(frames_of(message))
    assert isinstance(result, Rejected) and result.reason == "missing_field", result
    assert not schema_accepts(message)


@FUZZ
@given(event=bus_events, data=st.data())
def test_wrong_typed_field_is_rejected_by_both(validator, event, data):
    message = {"event": event, "time": data.draw(times), "data": data.draw(wrong_struct(data_type_info(event)))}
    result = validator.check(frames_of(message))
    assert isinstance(result, Rejected) and result.reason == "wrong_type", (result, message)
    assert not schema_accepts(message)


@FUZZ
@given(message=valid_message(), wrong=st.sampled_from([None, "yesterday", [1.5], {"t": 1}, True]))
def test_wrong_typed_time_is_rejected_by_both(validator, message, wrong):
    message["time"] = wrong
    result = validator.check(frames_of(message))
    assert isinstance(result, Rejected) and result.reason == "wrong_type", result
    assert not schema_accepts(message)


@FUZZ
@given(messages=st.lists(valid_message(), min_size=1, max_size=4), version=st.sampled_from(schema.PROTOCOL_VERSIONS))
def test_bulk_envelopes_of_accepted_events_validate(messages, version):
    inner = [as_envelope(m, version, seq) for seq, m in enumerate(messages, start=1)]
    bulk = {"node": "127.0.0.1", "seq": 0, "version": version, "time": 1.5, "event": "eventsink_bulk", "data": inner}
    fits = all(m["event"] in schema.events_of(version) for m in messages)
    assert envelope_validator(version, "eventsink_bulk").is_valid(bulk) == fits


def test_lifecycle_envelopes_validate_with_empty_data():
    for version in schema.PROTOCOL_VERSIONS:
        for event in schema.events_of(version):
            if event.startswith("eventsink_") and event != "eventsink_bulk":
                env = {"node": "10.44.99.2", "seq": 1, "version": version, "time": 1.0, "event": event, "data": {}}
                assert envelope_validator(version, event).is_valid(env)
                assert not envelope_validator(version, event).is_valid({**env, "data": []})
                assert not envelope_validator(version, event).is_valid({**env, "version": 3 - version})
    assert "eventsink_stopped" not in schema.events_of(2) and "eventsink_ended" not in schema.events_of(1)
    assert "participant_media_stream_window" not in schema.events_of(1)


def test_extra_fields_pass_both(validator):
    message = {
        "event": "participant_connected",
        "time": 1.0,
        "trace": [1],
        "data": {"uuid": "u", "brand_new": {"x": [None]}, "rx_bandwidth": 5},
    }
    assert isinstance(validator.check(frames_of(message)), Accepted)
    assert schema_accepts(message)
    assert envelope_validator(2, "participant_connected").is_valid({**as_envelope(message, 2), "extra_top": 1})
    assert set(EVENT_MESSAGE_TYPES) == set(EVENTS_MD)

"""The event schema document that `eventsink-agent schema` prints and `GET /v1/schema` serves.

Owns `render(fmt) -> str` (JSON text) and `document(fmt) -> dict` for the two
formats operators ask for:

- `openapi`: OpenAPI 3.1 with a `webhooks` section, one webhook per event per
  protocol version (what a sink receives, as a POST to its URL);
- `swagger`: Swagger 2.0, which has no webhooks, so the same operations are
  written as `paths` (one pseudo path per event and version) with `definitions`.

Every `data` schema is generated with `msgspec.json.schema_components` from the
msgspec types in `bus.events`, the very types the broker validates with, so the
document and the validation cannot disagree. The envelope (`node`, `seq`,
`version`, `time`, `event`, `data`) and the bulk envelope are msgspec types
made here. Unknown extra fields are allowed everywhere
(`additionalProperties: true`): receivers must ignore fields they do not know.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from bus.events import CONFERENCE_EVENTS, EVENT_DATA_TYPES, PARTICIPANT_EVENTS, VERSION_2_ONLY_EVENTS
from common import __version__
from common.vocabulary import LIFECYCLE_EVENTS_OF_VERSION, SCHEMA_FORMATS, AgentEvent

__all__ = ["PROTOCOL_VERSIONS", "render", "document", "events_of", "envelope_name", "webhook_name", "data_name"]

PROTOCOL_VERSIONS = (1, 2)
_OAS_REF = "#/components/schemas/{name}"
_SWAGGER_REF = "#/definitions/"

# ------------------------------------------------------------ plain-words descriptions

_NODE = (
    "The originating Conferencing Node's primary IP address (node.address in the agent's config). "
    "Always 127.0.0.1 on an eventsink_bulk envelope; the events inside carry their own node."
)
_SEQ = (
    "This sink's own counter on this node: 1, 2, 3 ... with no gaps. It starts again at 1, with an "
    "eventsink_started event, every time the sink's publisher starts: agent start, a reload that adds "
    "the sink, an operator restart of the sink, and a worker restart after a crash. Each node and each "
    "sink counts on its own. A jump means events were missed; a return to 1 means the publisher "
    "restarted (events delivered before may come again, with the same webhook-id). Always 0 on an "
    "eventsink_bulk envelope; the events inside carry their own seq."
)
_VERSION = "The sink's protocol version: 1 (original) or 2 (separate media stream events)."
_TIME = (
    "Unix time in seconds (with a fraction) of the event, as the conference process saw it when it "
    "published the event: not the time of delivery, and unchanged on retries. For eventsink_* "
    "lifecycle events and eventsink_bulk envelopes: when the agent made them."
)
_EVENT = "The event name."
_LIFECYCLE = {
    "eventsink_started": "The sink's publisher started: always seq 1; the seq counter starts here.",
    "eventsink_updated": "A reload changed this sink's settings; delivery carries on with the next seq.",
    "eventsink_stopped": "Version 1: the sink was removed by a reload or the agent is shutting down (best effort).",
    "eventsink_ended": "Version 2: the sink was removed by a reload or the agent is shutting down (best effort).",
}
_BULK = (
    "Sent instead of single events when the sink has bulk = true: up to bulk_max_events complete "
    "envelopes in data, each with its own seq, in seq order. It goes out when full or when its oldest "
    "event has waited bulk_interval seconds. node is 127.0.0.1 and seq is 0 on the outer envelope."
)
_OVERVIEW = """\
What an event sink receives from eventsink-agent, the agent that runs on each Conferencing Node.

Every event is one HTTP POST to the sink's configured URL with a JSON body, the envelope:
`{"node", "seq", "version", "time", "event", "data"}`. `data` holds the event's fields
(an empty object `{}` for the agent's own eventsink_* lifecycle events). With bulk = true,
events come in an `eventsink_bulk` envelope whose `data` is a list of envelopes.

Version 1 sinks never receive participant_media_stream_window or participant_media_streams_destroyed;
their participant_disconnected carries the leg's end-of-call `media_streams` inside `data`.
Version 2 sinks receive participant_media_streams_destroyed immediately before the matching
participant_disconnected (same `data.uuid`), and the stop event is eventsink_ended instead of
eventsink_stopped.

Any 2xx answer means delivered. Anything else (including every 3xx: redirects are not followed, a
connection error or a timeout) is a failure: the sink as a whole waits and retries its oldest
undelivered event first, doubling the wait after each failure; a 429 or 503 with Retry-After waits at
least that long. Delivery is at least once: dedupe on the `webhook-id` header, which is the same on
every retry and redelivery of an event. With max_in_flight = 1 events arrive strictly in seq order.

Fields may be added to any object in later releases and conference processes may send extra fields,
which are passed through unchanged: ignore the fields you do not know.

Call quality values: the quality buckets are the strings 0_unknown, 1_good, 2_ok, 3_bad, 4_terrible;
the per-sample quality integers are 0 unknown, 1 good, 2 ok, 3 bad, 4 terrible, or null when not in use."""

_HEADERS = {
    "WebhookId": {
        "name": "webhook-id",
        "required": True,
        "description": (
            "Identifies this event (or bulk envelope) for deduplication: identical on every retry "
            "and every redelivery of it, different for every other event. Opaque text; compare "
            "it, do not parse it. Sent whether or not the sink has a secret."
        ),
        "type": "string",
    },
    "WebhookTimestamp": {
        "name": "webhook-timestamp",
        "required": False,
        "description": (
            "Only when the sink has a secret: Unix time in whole seconds at which this attempt "
            "was signed; fresh on every retry. Standard Webhooks receivers reject a timestamp "
            "more than a few minutes from their own clock."
        ),
        "type": "integer",
    },
    "WebhookSignature": {
        "name": "webhook-signature",
        "required": False,
        "description": (
            "Only when the sink has a secret (`whsec_` + base64 key): `v1,` followed by the base64 "
            "HMAC-SHA256, keyed with the base64-decoded key, of `webhook-id` + '.' + "
            "`webhook-timestamp` + '.' + the exact request body, as in the Standard Webhooks "
            "specification. May hold several space-separated signatures; one match is enough."
        ),
        "type": "string",
    },
    "UserAgent": {
        "name": "User-Agent",
        "required": True,
        "description": f"`eventsink-agent/VERSION`, for example `eventsink-agent/{__version__}`.",
        "type": "string",
    },
}
_AUTH = (
    "HTTP Basic authentication (`Authorization: Basic ...` header), sent only when the sink has a "
    "username; username and password are case-sensitive."
)
_SUCCESS = "Delivered: any 2xx answer acknowledges the event (for a bulk envelope, every event inside)."
_FAILURE = (
    "Not delivered: any other answer, including a 3xx (redirects are never followed), is a failure and "
    "the sink retries later with backoff. 429 or 503 with a Retry-After header: the agent waits at "
    "least that long."
)

# ------------------------------------------------------------ the types


class LifecycleData(msgspec.Struct):
    """data of the agent's own eventsink_* lifecycle events: always an empty object {}."""


class EventEnvelope(msgspec.Struct):
    """The envelope of every event a sink receives; each event's own schema narrows `event`, `version` and `data`."""

    node: Annotated[str, Meta(description=_NODE)]
    seq: Annotated[int, Meta(ge=0, description=_SEQ)]
    version: Annotated[Literal[1, 2], Meta(description=_VERSION)]
    time: Annotated[float, Meta(description=_TIME)]
    event: Annotated[str, Meta(description=_EVENT)]
    data: Annotated[
        dict[str, Any] | list[dict[str, Any]],
        Meta(description="The event's fields (a list of envelopes for eventsink_bulk)."),
    ]


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def events_of(version: int) -> tuple[str, ...]:
    """Every event name a sink of VERSION can receive, lifecycle and bulk included."""
    bus = CONFERENCE_EVENTS + PARTICIPANT_EVENTS + (VERSION_2_ONLY_EVENTS if version == 2 else ())
    return bus + LIFECYCLE_EVENTS_OF_VERSION[version] + (AgentEvent.BULK,)


def envelope_name(version: int, event: str) -> str:
    """The schema (component/definition) name of EVENT's envelope for VERSION."""
    return f"V{version}{_camel(event)}Event"


def webhook_name(version: int, event: str) -> str:
    """The key of EVENT for VERSION under `webhooks` (openapi); swagger's path is '/' + this."""
    return f"v{version}/{event}"


def data_name(event: str) -> str:
    """The schema name of EVENT's `data` (the msgspec type's name, or LifecycleData)."""
    return EVENT_DATA_TYPES[event].__name__ if event in EVENT_DATA_TYPES else LifecycleData.__name__


def _data_type(event: str) -> type:
    return EVENT_DATA_TYPES.get(event, LifecycleData)


def _event_description(version: int, event: str) -> str:
    if event == AgentEvent.BULK:
        return _BULK
    if event in _LIFECYCLE:
        return _LIFECYCLE[event] + " data is always {}."
    text = (_data_type(event).__doc__ or "").strip()
    if event == "participant_disconnected":
        text += (
            " Version 1: data also carries the leg's media_streams (end-of-call statistics), merged in by the agent."
            if version == 1
            else " Version 2: sent immediately after the leg's participant_media_streams_destroyed."
        )
    return text


def _envelope_type(version: int, event: str) -> type:
    """EVENT's envelope for VERSION as a msgspec type (so its schema comes from msgspec too)."""
    bulk = event == AgentEvent.BULK
    data: Any = (
        Annotated[list[dict[str, Any]], Meta(description="The bundled envelopes, each with its own seq, in seq order.")]
        if bulk
        else Annotated[_data_type(event), Meta(description="The event's fields.")]
    )
    fields = [
        (
            "node",
            Annotated[Literal["127.0.0.1"], Meta(description=_NODE)]
            if bulk
            else Annotated[str, Meta(description=_NODE)],
        ),
        (
            "seq",
            Annotated[Literal[0], Meta(description=_SEQ)] if bulk else Annotated[int, Meta(ge=1, description=_SEQ)],
        ),
        ("version", Annotated[Literal[version], Meta(description=_VERSION)]),  # type: ignore[valid-type]
        ("time", Annotated[float, Meta(description=_TIME)]),
        # msgspec takes plain strings in a Literal, not StrEnum members
        ("event", Annotated[Literal[str(event)], Meta(description=_EVENT)]),  # type: ignore[valid-type]
        ("data", data),
    ]
    return msgspec.defstruct(envelope_name(version, event), fields, module=__name__)


# ------------------------------------------------------------ building


def _walk(node: Any, fn) -> Any:
    """Apply fn bottom-up to every dict of a JSON-like tree."""
    if isinstance(node, dict):
        return fn({k: _walk(v, fn) for k, v in node.items()})
    if isinstance(node, list):
        return [_walk(v, fn) for v in node]
    return node


def _tidy(schema: dict) -> dict:
    """Open every object to unknown fields, type every enum, drop empty `required` lists."""
    if schema.get("type") == "object" and "properties" in schema:
        schema.setdefault("additionalProperties", True)
    if "enum" in schema and "type" not in schema:
        values = schema["enum"]
        if all(isinstance(v, str) for v in values):
            schema["type"] = "string"
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            schema["type"] = "integer"
    if schema.get("required") == []:
        del schema["required"]
    return schema


@functools.cache
def _components() -> dict[str, dict]:
    """Every schema of the document, by name, with OpenAPI 3.1 `#/components/schemas/` references."""
    types: list[type] = [EventEnvelope, LifecycleData, *EVENT_DATA_TYPES.values()]
    for version in PROTOCOL_VERSIONS:
        types += [_envelope_type(version, event) for event in events_of(version)]
    _, components = msgspec.json.schema_components(types, ref_template=_OAS_REF)
    components = _walk(components, _tidy)
    for version in PROTOCOL_VERSIONS:
        inner = [envelope_name(version, e) for e in events_of(version) if e != AgentEvent.BULK]
        bulk = components[envelope_name(version, AgentEvent.BULK)]
        bulk["properties"]["data"]["items"] = {"anyOf": [{"$ref": _OAS_REF.format(name=n)} for n in inner]}
    return components


def _parameters() -> dict[str, dict]:
    return {
        key: {
            "name": h["name"],
            "in": "header",
            "required": h["required"],
            "description": h["description"],
            "schema": {"type": h["type"]},
        }
        for key, h in _HEADERS.items()
    }


def _operation(version: int, event: str, fmt: str) -> dict:
    name = envelope_name(version, event)
    op: dict[str, Any] = {
        "operationId": f"v{version}_{event}",
        "summary": f"{event} (protocol version {version})",
        "description": _event_description(version, event),
        "tags": [f"version {version}"],
        "security": [{}, {"basicAuth": []}],
        "x-event": event,
        "x-protocol-version": version,
    }
    if fmt == "openapi":
        op["parameters"] = [{"$ref": f"#/components/parameters/{key}"} for key in _HEADERS]
        op["requestBody"] = {
            "required": True,
            "description": "The event envelope.",
            "content": {"application/json": {"schema": {"$ref": _OAS_REF.format(name=name)}}},
        }
        op["responses"] = {"2XX": {"description": _SUCCESS}, "default": {"description": _FAILURE}}
    else:
        op["consumes"] = ["application/json"]
        op["parameters"] = [{"$ref": f"#/parameters/{key}"} for key in _HEADERS] + [
            {
                "name": "envelope",
                "in": "body",
                "required": True,
                "description": "The event envelope.",
                "schema": {"$ref": _SWAGGER_REF + name},
            }
        ]
        op["responses"] = {"200": {"description": _SUCCESS}, "default": {"description": _FAILURE}}
    return {"post": op}


def _tags() -> list[dict]:
    return [
        {"name": "version 1", "description": "What a sink with version = 1 (the original protocol) receives."},
        {"name": "version 2", "description": "What a sink with version = 2 (separate media stream events) receives."},
    ]


def _info() -> dict:
    return {
        "title": "eventsink-agent events",
        "version": __version__,
        "description": _OVERVIEW,
        "license": {"name": "MIT", "identifier": "MIT"},
    }


def _openapi() -> dict:
    webhooks = {webhook_name(v, e): _operation(v, e, "openapi") for v in PROTOCOL_VERSIONS for e in events_of(v)}
    return {
        "openapi": "3.1.0",
        "info": _info(),
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "tags": _tags(),
        "paths": {},
        "webhooks": webhooks,
        "components": {
            "schemas": copy.deepcopy(_components()),
            "parameters": _parameters(),
            "securitySchemes": {"basicAuth": {"type": "http", "scheme": "basic", "description": _AUTH}},
        },
    }


def _swagger_schema(schema: dict) -> dict:
    """One OpenAPI 3.1 (JSON Schema 2020-12) schema node as Swagger 2.0 allows it."""
    out = dict(schema)
    if "$ref" in out:
        out["$ref"] = out["$ref"].replace("#/components/schemas/", _SWAGGER_REF)
        if len(out) > 1:  # Swagger 2.0 ignores siblings of $ref: keep them around an allOf
            out["allOf"] = [{"$ref": out.pop("$ref")}]
    options = out.pop("anyOf", None)
    if options is not None:
        non_null = [o for o in options if o.get("type") != "null"]
        if len(non_null) == 1:  # T or null -> T with x-nullable (2.0 has no null type)
            out = {**non_null[0], **out}
            if len(non_null) < len(options):
                out["x-nullable"] = True
        elif all("$ref" in o for o in non_null):  # a choice of envelopes (bulk items): name the common one
            out["$ref"] = _SWAGGER_REF + EventEnvelope.__name__
        # otherwise (object or list): 2.0 cannot say it; the description does
    return out


def _swagger() -> dict:
    definitions = _walk(copy.deepcopy(_components()), _swagger_schema)
    parameters = {
        key: {
            "name": h["name"],
            "in": "header",
            "required": h["required"],
            "description": h["description"],
            "type": h["type"],
        }
        for key, h in _HEADERS.items()
    }
    paths = {"/" + webhook_name(v, e): _operation(v, e, "swagger") for v in PROTOCOL_VERSIONS for e in events_of(v)}
    info = _info()
    info["license"] = {"name": "MIT"}
    info["description"] += (
        "\n\nSwagger 2.0 has no webhooks: each event is written here as a POST to a path named after its "
        "version and event, but the agent POSTs every event to the sink's own configured URL."
    )
    return {
        "swagger": "2.0",
        "info": info,
        "basePath": "/",
        "schemes": ["https", "http"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "tags": _tags(),
        "paths": paths,
        "definitions": definitions,
        "parameters": parameters,
        "securityDefinitions": {"basicAuth": {"type": "basic", "description": _AUTH}},
    }


def document(fmt: str = "openapi") -> dict:
    """The schema document for FMT ('openapi' or 'swagger') as a fresh dict."""
    if fmt == "openapi":
        return _openapi()
    if fmt == "swagger":
        return _swagger()
    raise ValueError(f"unknown schema format {fmt[:40]!r}: use {' or '.join(SCHEMA_FORMATS)}")


@functools.cache
def render(fmt: str = "openapi") -> str:
    """The schema document for FMT as JSON text (ends with a newline)."""
    return json.dumps(document(fmt), indent=2, ensure_ascii=False) + "\n"

"""The control API as an OpenAPI 3.1 document, built from `agent.commands.COMMANDS` and their actions.

Owns the document served at `GET /v1/openapi.json` and committed as
docs/openapi.json: one operation per command (its path and query parameters
from the command), the answers the control server can give it, and the schemas
of the success bodies as far as the code knows them (`RESPONSE_SCHEMAS`, one
per command: a command without one is an error here, so a new command cannot
be served undocumented). docs/control-api.md is rendered from the same
document by agent/reference/api.py.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from agent.commands import deliveries
from agent.commands.attempts import DEFAULT_LIMIT, MAX_LIMIT
from agent.commands.registry import COMMANDS
from agent.commands.unit import Command
from agent.server.actions.attempts import ANSWER_TIMEOUT
from agent.server.control_http import IDLE_TIMEOUT, MAX_BODY, MAX_HEAD, READ_TIMEOUT
from agent.server.deliveries_feed import MAX_FOLLOWERS, MAX_QUEUED_BYTES
from agent.supervision.states import ChildState
from common.vocabulary import POST_OUTCOMES, SCHEMA_FORMATS

API_VERSION = "1"  # the /v1 of the paths; bumped only with an incompatible change
ERROR_REF = {"$ref": "#/components/schemas/Error"}

# Answers any request can get, whatever its route: framing, overload and the server's own failure.
COMMON_ERRORS: dict[int, str] = {
    400: "Malformed request (request line, headers, Content-Length), a body that is not a JSON object, "
    "or a parameter the command refuses",
    408: f"The request was not complete within {READ_TIMEOUT:g} s",
    411: "A chunked request body: send Content-Length",
    413: f"The request body is larger than {MAX_BODY} bytes",
    431: f"The request head is larger than {MAX_HEAD} bytes",
    500: "The agent could not carry out the command (details only in the agent's log)",
    503: "The agent did not answer in time, or the control socket is busy: try again",
    505: "An HTTP version other than 1.0 and 1.1",
}
# Answers particular to a command (beyond 404 for a path naming something unknown).
COMMAND_ERRORS: dict[str, dict[int, str]] = {
    "reload": {400: "The config file has problems: nothing changed (`problems` lists them)"},
    "schema": {400: "An unknown `format`"},
    "replay": {400: "A `since` that is not a usable TIME"},
    "redrive": {404: "An id that names none of the sink's dead letters (nothing is redriven)"},
    "discard": {404: "No such dead letter"},
    "attempts": {
        400: "A `limit` that is not a whole number of at least 1",
        503: f"The sink's worker exited, is not connected yet, or did not answer within {ANSWER_TIMEOUT:g} s",
    },
    "deliveries": {
        400: "A `limit` that is not a whole number of at least 1",
        503: f"The sink's worker exited, is not connected yet, or did not answer within {ANSWER_TIMEOUT:g} s",
    },
    "follow": {400: "No `follow=1`", 404: "No such sink on this node", 503: f"{MAX_FOLLOWERS} clients already follow"},
}
NOT_FOUND = "No such {fields} on this node"

_STRINGS = {"type": "array", "items": {"type": "string"}}
_COUNT = {"type": "integer", "minimum": 0}

SINK_STATUS = {
    "type": "object",
    "required": [
        "name",
        "url",
        "version",
        "state",
        "pid",
        "backlog",
        "in_flight",
        "delivered",
        "failures",
        "current_backoff",
        "last_attempted_restart",
        "alarms",
    ],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "url": {"type": "string", "description": "the sink's URL without credentials"},
        "locations": {**_STRINGS, "description": "the system locations whose nodes run the sink"},
        "version": {"type": "integer", "enum": [1, 2]},
        "state": {"type": "string", "enum": [s.value for s in ChildState]},
        "pid": {"type": ["integer", "null"], "description": "the worker's process id; null when none runs"},
        "backlog": _COUNT,
        "in_flight": _COUNT,
        "delivered": _COUNT,
        "failures": _COUNT,
        "current_backoff": {"type": "number", "minimum": 0, "description": "seconds; 0 when healthy"},
        "last_attempted_restart": {"type": ["string", "null"], "description": "ISO 8601 UTC; null before any restart"},
        "alarms": {**_STRINGS, "description": "names of the sink's active alarms"},
        "restarts": _COUNT,
        "dead_letters": {**_COUNT, "description": "dead letters the sink holds"},
    },
}
ALARM = {
    "type": "object",
    "required": ["name", "sink", "raised_at", "detail"],
    "properties": {
        "name": {"type": "string"},
        "sink": {"type": ["string", "null"], "description": "null for a node's own alarm"},
        "raised_at": {"type": "string", "description": "ISO 8601 UTC"},
        "detail": {"type": "string"},
    },
}
DEAD_LETTER = {
    "type": "object",
    "required": ["id", "event", "accepted_at", "attempts", "status", "detail"],
    "properties": {
        "id": {"type": "string", "description": "the event's webhook-id"},
        "event": {"type": "string"},
        "accepted_at": {"type": "string", "description": "ISO 8601 UTC: when the bus accepted it"},
        "attempts": {**_COUNT, "description": "POSTs it was refused in a row"},
        "status": {"type": ["integer", "null"], "description": "the last refusal's HTTP status"},
        "detail": {"type": "string", "description": "the last refusal's reason and up to 200 characters of the answer"},
        "redrive": {"type": "boolean", "description": "marked to be sent again by the next worker"},
    },
}
ATTEMPT = {
    "type": "object",
    "required": ["at", "seq", "events", "webhook_id", "outcome", "status", "duration", "detail"],
    "additionalProperties": False,
    "properties": {
        "at": {"type": "string", "description": "the end of the attempt, ISO 8601 UTC with milliseconds"},
        "seq": {"type": "integer", "description": "the POST's seq; a bulk envelope: that of its first inner event"},
        "events": {"type": "integer", "minimum": 1, "description": "events inside the POST"},
        "webhook_id": {"type": "string"},
        "outcome": {"type": "string", "enum": list(POST_OUTCOMES)},
        "status": {"type": ["integer", "null"], "description": "the HTTP status; null without an answer"},
        "duration": {"type": "number", "minimum": 0, "description": "seconds"},
        "detail": {
            "type": "string",
            "description": "a failure's reason, as support.events gives it (never "
            "credentials); for a success `HTTP` and its status, e.g. `HTTP 200`",
        },
    },
}
DELIVERY = {
    "type": "object",
    "required": ["at", "webhook_id", "seq", "events", "outcome", "status", "duration", "headers", "body"],
    "additionalProperties": False,
    "properties": {
        **{k: v for k, v in ATTEMPT["properties"].items() if k != "detail"},
        "headers": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "the request headers as given to libcurl; every secret (`Authorization`, the "
            "values of the configured `headers`, proxy credentials, passwords and tokens) is `***`",
        },
        "body": {"type": "string", "description": "the JSON as sent (decompressed when gzip), secrets as `***`"},
    },
}
FOLLOWED = {
    **DELIVERY,
    "required": ["sink", *DELIVERY["required"]],
    "properties": {"sink": {"type": "string"}, **DELIVERY["properties"]},
}
RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "status": {
        "type": "object",
        "required": ["node", "sinks"],
        "properties": {
            "node": {
                "type": "object",
                "properties": {
                    "address": {"type": "string"},
                    "location": {"type": "string"},
                    "role": {"type": "string"},
                },
            },
            "sinks": {"type": "array", "items": {"$ref": "#/components/schemas/SinkStatus"}},
            "bus": {
                "type": "object",
                "properties": {
                    "received": _COUNT,
                    "rejected": {"type": "object", "additionalProperties": _COUNT, "description": "count by reason"},
                    "journal_bytes": _COUNT,
                    "journal_full": {"type": "boolean"},
                    "broker_pid": {"type": ["integer", "null"]},
                    "broker_restarts": _COUNT,
                },
            },
            "deliveries": {
                "type": "object",
                "properties": {
                    "followers": {**_COUNT, "description": "open `GET /v1/deliveries?follow=1` streams"},
                    "streaming": {**_STRINGS, "description": "the sinks whose worker streams its POSTs for them"},
                },
            },
        },
    },
    "alarms": {"type": "array", "items": {"$ref": "#/components/schemas/Alarm"}},
    "config": {
        "type": "object",
        "required": ["path", "running", "check"],
        "properties": {
            "path": {"type": "string", "description": "the config file"},
            "running": {"type": "object", "description": "the running configuration, every secret as `***`"},
            "check": {
                "type": "object",
                "required": ["valid", "problems", "warnings"],
                "description": "what `eventsink-agent check` says of the config file now",
                "properties": {"valid": {"type": "boolean"}, "problems": _STRINGS, "warnings": _STRINGS},
            },
        },
    },
    "restart": {"type": "object", "required": ["restarted"], "properties": {"restarted": {"type": "string"}}},
    "reload": {
        "type": "object",
        "required": ["added", "changed", "removed"],
        "properties": {
            "reloaded": {"const": True},
            "added": _STRINGS,
            "changed": _STRINGS,
            "removed": _STRINGS,
            "needs_restart": {**_STRINGS, "description": "`agent.KEY`s that apply only after a restart of the agent"},
        },
    },
    "replay": {
        "type": "object",
        "required": ["events", "since", "oldest_retained"],
        "properties": {
            "events": {**_COUNT, "description": "retained events accepted at or after `since`: what is sent again"},
            "since": {"type": "string", "description": "ISO 8601 UTC"},
            "oldest_retained": {
                "type": ["string", "null"],
                "description": "ISO 8601 UTC: how far back a replay can reach; null when nothing is retained",
            },
            "dry_run": {"type": "boolean"},
        },
    },
    "dead-letters": {"type": "array", "items": {"$ref": "#/components/schemas/DeadLetter"}},
    "redrive": {"type": "object", "required": ["redriven"], "properties": {"redriven": _COUNT}},
    "discard": {"type": "object", "required": ["discarded"], "properties": {"discarded": {"type": "string"}}},
    "attempts": {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Attempt"},
        "maxItems": MAX_LIMIT,
        "description": "the sink's most recent POST attempts since its worker started, newest first",
    },
    "deliveries": {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Delivery"},
        "maxItems": deliveries.MAX_LIMIT,
        "description": "the sink's most recent POSTs as sent, newest first",
    },
    "follow": {
        **FOLLOWED,
        "description": "NDJSON: one such object per line, for each POST as it completes, until the client closes "
        "(chunked for HTTP/1.1). A client that leaves " + f"{MAX_QUEUED_BYTES // 2**20} MiB" + " unread is dropped: "
        "the stream ends.",
    },
    "schema": {"type": "object", "description": "the event schema as an OpenAPI 3 or Swagger 2 document"},
    "openapi": {"type": "object", "required": ["openapi", "paths"], "description": "this document"},
}
QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    "format": {"type": "string", "enum": list(SCHEMA_FORMATS), "default": SCHEMA_FORMATS[0]},
    "limit": {
        "type": "integer",
        "minimum": 1,
        "default": DEFAULT_LIMIT,
        "description": f"a larger value than {MAX_LIMIT} is taken as {MAX_LIMIT}",
    },
    "follow": {"type": "string", "enum": ["1"]},
    "sink": {"type": "string", "minLength": 1},
}
# A query field whose schema differs for one command: (command, field) -> schema.
COMMAND_QUERY_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("deliveries", "limit"): {
        "type": "integer",
        "minimum": 1,
        "default": deliveries.DEFAULT_LIMIT,
        "description": f"a larger value than {deliveries.MAX_LIMIT} is taken as {deliveries.MAX_LIMIT}",
    }
}
ERROR_SCHEMA = {
    "type": "object",
    "description": "The one error envelope of every 4xx and 5xx answer: one plain sentence, never a traceback",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {"type": "string"},
        "problems": {**_STRINGS, "description": "each problem, when there are several (reload)"},
    },
}

DESCRIPTION = f"""\
The control API of eventsink-agent: HTTP/1.1 with JSON bodies over the Unix socket \
`[agent] control_socket` (default `/run/eventsink-agent/control.sock`, mode 0660), never TCP. \
`eventsinkctl` is its client; `curl --unix-socket SOCK http://agent/v1/status` works too.

Commands take their fields from the path and query string, and some from a JSON body (its schema \
is given with the command); any other request body is optional and, when sent, must be a JSON \
object. A body is at most {MAX_BODY} bytes. \
A connection may carry several requests (keep-alive, idle for at most {IDLE_TIMEOUT:g} s). \
An unknown path is answered 404 and a known path with another method 405 (with `Allow`), \
both with the error envelope."""


def parameters(command: Command) -> list[dict[str, Any]]:
    helps = dict(command.field_help)
    out: list[dict[str, Any]] = []
    for name in command.fields:
        out.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": helps.get(name, name),
                "schema": {"type": "string", "minLength": 1},
            }
        )
    for name in command.query:
        out.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": helps.get(name, name),
                "schema": COMMAND_QUERY_SCHEMAS.get((command.name, name))
                or QUERY_SCHEMAS.get(name, {"type": "string"}),
            }
        )
    return out


def error_responses(command: Command) -> dict[int, str]:
    errors = dict(COMMON_ERRORS)
    if command.fields:
        errors[404] = NOT_FOUND.format(fields=" or ".join(command.fields))
    for status, text in COMMAND_ERRORS.get(command.name, {}).items():
        errors[status] = f"{errors[status]}; or: {text}" if status in errors else text
    return dict(sorted(errors.items()))


def operation(command: Command, body: Any) -> dict[str, Any]:
    if command.name not in RESPONSE_SCHEMAS:
        raise KeyError(f"agent/server/openapi.py: no response schema for the command {command.name!r}")
    responses: dict[str, Any] = {
        "200": {"description": "Done", "content": {command.media_type: {"schema": RESPONSE_SCHEMAS[command.name]}}}
    }
    for status, text in error_responses(command).items():
        responses[str(status)] = {"description": text, "content": {"application/json": {"schema": ERROR_REF}}}
    op: dict[str, Any] = {"operationId": command.name, "summary": command.help, "responses": responses}
    if params := parameters(command):
        op["parameters"] = params
    if body is not None:
        ref = {"$ref": f"#/components/schemas/{body.__name__}"}
        required = any(f.required for f in msgspec.structs.fields(body))
        op["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": ref}},
            "description": "a JSON object; a field left out takes its default",
        }
    op["x-eventsinkctl"] = command.in_ctl
    return op


@functools.lru_cache(maxsize=1)
def document_of(actions: tuple) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every command in COMMANDS; ACTIONS (agent/server/actions/registry.py)
    give the body each takes (passed in: the registry serves this document, so imports this module)."""
    body_of = {a.name: a.body for a in actions}
    paths: dict[str, dict[str, Any]] = {}
    for command in COMMANDS:
        paths.setdefault(command.path, {})[command.method.lower()] = operation(command, body_of[command.name])
    bodies = [body for c in COMMANDS if (body := body_of[c.name]) is not None]
    _, body_schemas = msgspec.json.schema_components(bodies, ref_template="#/components/schemas/{name}")
    return {
        "openapi": "3.1.0",
        "info": {"title": "eventsink-agent control API", "version": API_VERSION, "description": DESCRIPTION},
        "servers": [{"url": "http://agent", "description": "any host name: the connection goes to the Unix socket"}],
        "paths": paths,
        "components": {
            "schemas": {
                "Error": ERROR_SCHEMA,
                "SinkStatus": SINK_STATUS,
                "Alarm": ALARM,
                "Attempt": ATTEMPT,
                "DeadLetter": DEAD_LETTER,
                "Delivery": DELIVERY,
                **body_schemas,
            }
        },
    }

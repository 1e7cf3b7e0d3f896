"""`schema`: the event schema document, OpenAPI 3 or Swagger 2
(`GET /v1/schema?format=`); answered on the control server's thread, since
it needs nothing of the main loop."""

from __future__ import annotations

from typing import Any

from bus import schema as event_schema
from common.vocabulary import SCHEMA_FORMATS
from agent.commands.unit import Command, RawJSON
from agent.errors import CommandError


def schema(supervisor: Any, params: dict[str, str]) -> RawJSON:
    fmt = params.get("format") or SCHEMA_FORMATS[0]
    if fmt not in SCHEMA_FORMATS:
        raise CommandError(400, f"unknown schema format {fmt[:40]!r}: use {' or '.join(SCHEMA_FORMATS)}")
    return RawJSON(event_schema.render(fmt))


def render_raw(body: Any) -> str:
    return body if isinstance(body, str) else str(body)


SCHEMA = Command(
    "schema", "the event schema document (?format=openapi|swagger)",
    "GET", "/v1/schema", None, render_raw, in_ctl=False, query=("format",),
    serve=schema,
)

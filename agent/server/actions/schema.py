"""`schema`: the event schema document (bus/schema.py), answered on the control
server's thread, since it needs nothing of the main loop (docs/control-api.md)."""

from __future__ import annotations

from agent.client.errors import CommandError
from agent.commands import schema as command
from agent.server.actions.unit import Action, RawJSON
from bus import schema as event_schema
from common.vocabulary import SCHEMA_FORMATS


def schema(supervisor: object, params: dict[str, str]) -> RawJSON:
    fmt = params.get("format") or SCHEMA_FORMATS[0]
    if fmt not in SCHEMA_FORMATS:
        raise CommandError(400, f"unknown schema format {fmt[:40]!r}: use {' or '.join(SCHEMA_FORMATS)}")
    return RawJSON(event_schema.render(fmt))


SCHEMA = Action(command.SCHEMA, serve=schema)

"""`schema`: the event schema document, OpenAPI 3 or Swagger 2
(`GET /v1/schema?format=`, docs/control-api.md); not an eventsinkctl
subcommand. Its work is agent/server/actions/schema.py."""

from __future__ import annotations

from agent.commands.unit import Command, render_raw

SCHEMA = Command(
    "schema",
    "the event schema document (?format=openapi|swagger)",
    "GET",
    "/v1/schema",
    render=render_raw,
    in_ctl=False,
    query=("format",),
)

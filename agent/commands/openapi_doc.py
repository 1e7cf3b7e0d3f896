"""`openapi`: this control API as an OpenAPI 3 document (`GET /v1/openapi.json`,
docs/control-api.md); not an eventsinkctl subcommand. Its work is
agent/server/actions/openapi_doc.py."""

from __future__ import annotations

from agent.commands.unit import Command, render_raw

OPENAPI = Command(
    "openapi",
    "this control API as an OpenAPI 3 document (docs/control-api.md)",
    "GET",
    "/v1/openapi.json",
    render=render_raw,
    in_ctl=False,
)

"""`openapi`: this control API as an OpenAPI 3 document (`GET /v1/openapi.json`,
built by agent/openapi.py from the registry); answered on the server's thread."""

from __future__ import annotations

from typing import Any

from agent.commands.schema import render_raw
from agent.commands.unit import Command


def openapi(supervisor: Any, params: dict[str, str]) -> Any:
    # Imported here: the document is built from the registry, which imports this module.
    from agent.openapi import openapi_document

    return openapi_document()


OPENAPI = Command(
    "openapi", "this control API as an OpenAPI 3 document (docs/control-api.md)",
    "GET", "/v1/openapi.json", None, render_raw, in_ctl=False, serve=openapi,
)

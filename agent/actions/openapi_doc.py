"""`openapi`: the document agent/openapi.py builds from the registry, answered
on the server's thread (docs/control-api.md)."""

from __future__ import annotations

from typing import Any

from agent.actions.unit import Action
from agent.commands import openapi_doc as command


def openapi(supervisor: Any, params: dict[str, str]) -> Any:
    # Imported here: the document is built from the actions' registry, which imports this module.
    from agent.openapi import openapi_document

    return openapi_document()


OPENAPI = Action(command.OPENAPI, serve=openapi)

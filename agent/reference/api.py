"""docs/control-api.md, rendered from the OpenAPI document of agent/server/openapi.py.

Owns the human-readable form of the control API: a table of the routes, then
each operation's parameters, answers and success schema. Everything here comes
from `openapi_document()`, so the page and docs/openapi.json cannot disagree.
"""

from __future__ import annotations

import json
from typing import Any

from agent.server.actions.registry import openapi_document

INTRO = """\
# Control API

Generated from the command registry (`agent/commands/`) by `python -m agent.reference --write`:
do not edit by hand. The same document, as OpenAPI 3.1, is [openapi.json](openapi.json) and is
served by the agent at `GET /v1/openapi.json`.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def route_table(doc: dict[str, Any]) -> str:
    rows = ["| request | command | eventsinkctl | what it does |", "| --- | --- | --- | --- |"]
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            ctl = f"`eventsinkctl {op['operationId']}`" if op["x-eventsinkctl"] else "-"
            rows.append(f"| `{method.upper()} {path}` | `{op['operationId']}` | {ctl} | {_cell(op['summary'])} |")
    return "\n".join(rows) + "\n"


def operation_section(path: str, method: str, op: dict[str, Any]) -> str:
    lines = [f"## `{method.upper()} {path}`", "", op["summary"][:1].upper() + op["summary"][1:] + ".", ""]
    for param in op.get("parameters", []):
        required = "required" if param["required"] else "optional"
        allowed = param["schema"].get("enum")
        values = f"; one of {', '.join(f'`{v}`' for v in allowed)}" if allowed else ""
        lines.append(f"- `{param['name']}` ({param['in']}, {required}): {param['description']}{values}")
    if op.get("parameters"):
        lines.append("")
    lines += ["| status | meaning |", "| --- | --- |"]
    lines += [f"| {status} | {_cell(answer['description'])} |" for status, answer in op["responses"].items()]
    ((media, content),) = op["responses"]["200"]["content"].items()
    what = (
        "Success body (JSON Schema)"
        if media == "application/json"
        else f"Success body: `{media}`, each line (JSON Schema)"
    )
    lines += ["", f"{what}:", "", "```json", json.dumps(content["schema"], indent=2), "```", ""]
    return "\n".join(lines)


def control_api_markdown() -> str:
    """The text of docs/control-api.md."""
    doc = openapi_document()
    parts = [INTRO, doc["info"]["description"] + "\n", route_table(doc)]
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            parts.append(operation_section(path, method, op))
    schemas = doc["components"]["schemas"]
    parts.append("## Shared schemas\n")
    for name, schema in schemas.items():
        parts.append(f"`{name}`:\n\n```json\n{json.dumps(schema, indent=2)}\n```\n")
    return "\n".join(parts)


def openapi_json() -> str:
    """The text of docs/openapi.json."""
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"

"""The event schema document (`eventsink-agent schema`, OpenAPI) as the View
schema page shows it: per protocol version, each event with its fields and
their types."""

from __future__ import annotations

from typing import Any


def _ref_name(node: dict) -> str | None:
    ref = node.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def type_of(node: Any, schemas: dict) -> str:
    """A short type name: string, integer, array of MediaStream, object, ..."""
    if not isinstance(node, dict):
        return "any"
    if (name := _ref_name(node)) is not None:
        return name
    for key in ("anyOf", "oneOf"):
        if key in node:
            return " or ".join(type_of(n, schemas) for n in node[key])
    kind = node.get("type")
    if isinstance(kind, list):
        return " or ".join(map(str, kind))
    if kind == "array":
        return f"array of {type_of(node.get('items'), schemas)}"
    if "enum" in node and kind is None:
        return "one of " + ", ".join(map(str, node["enum"]))
    return str(kind or "object")


def fields_of(node: Any, schemas: dict) -> list[dict]:
    """(name, type, required, description) of an object schema (following one $ref)."""
    if isinstance(node, dict) and (name := _ref_name(node)) is not None:
        node = schemas.get(name, {})
    if not isinstance(node, dict):
        return []
    required = set(node.get("required", []))
    return [
        {
            "name": key,
            "type": type_of(prop, schemas),
            "required": key in required,
            "description": prop.get("description", "") if isinstance(prop, dict) else "",
        }
        for key, prop in node.get("properties", {}).items()
    ]


def events_by_version(doc: dict) -> dict[int, list[dict]]:
    """{version: [{"event", "summary", "fields"}]} from the OpenAPI document's webhooks."""
    schemas = doc.get("components", {}).get("schemas", {})
    out: dict[int, list[dict]] = {}
    for hook in doc.get("webhooks", {}).values():
        post = hook.get("post", {}) if isinstance(hook, dict) else {}
        body = post.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        envelope = schemas.get(_ref_name(body) or "", {})
        data = envelope.get("properties", {}).get("data", {})
        out.setdefault(int(post.get("x-protocol-version", 0)), []).append(
            {
                "event": post.get("x-event", ""),
                "summary": post.get("description", ""),
                "fields": fields_of(data, schemas),
            }
        )
    return dict(sorted(out.items()))

"""`eventsink-agent import-pexip`: an agent.toml from a Management Node's answers (docs/import-pexip.md).

Owns the mapping of Pexip Infinity's own field names onto the agent's config
(event_sink -> `[[sink]]`, system_location.event_sinks -> each sink's
`locations`, global `es_*` -> `[tuning]`), the warnings an operator needs to
read before using the result (fields not used, a sink no location lists, a
username without a password), and proving that the result passes `check`.
Reading the files is agent/pexip/answers.py's; writing TOML and the password
files is agent/pexip/output.py's.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from agent.pexip.answers import AnswerError, read_answer, uri_kind_and_id

# Pexip's event_sink fields -> the agent's [[sink]] keys ("name" and "password" are handled apart).
SINK_FIELDS = {
    "description": "description",
    "url": "url",
    "username": "username",
    "version": "version",
    "verify_tls_certificate": "verify_tls",
    "bulk_support": "bulk",
}
SINK_TYPES = {
    "name": str,
    "description": str,
    "url": str,
    "username": str,
    "password": str,
    "version": int,
    "verify_tls_certificate": bool,
    "bulk_support": bool,
}
# Pexip's global es_* fields -> [tuning] keys ("Advanced event sink tuning").
TUNING_FIELDS = {
    "es_connection_timeout": "connection_timeout",
    "es_initial_retry_backoff": "initial_retry_backoff",
    "es_maximum_retry_backoff": "max_retry_backoff",
    "es_maximum_deferred_posts": "max_background_posts",
    "es_media_streams_wait": "media_streams_wait",
    "es_short_term_memory_expiration": "cache_expiration",
}
# Fields read only to tie objects together.
LINK_FIELDS = {"id", "resource_uri"}
USED_FIELDS = {
    "event_sink": set(SINK_TYPES) | LINK_FIELDS,
    "system_location": {"name", "event_sinks"} | LINK_FIELDS,
    "global": set(TUNING_FIELDS) | LINK_FIELDS,
}
NOT_A_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class ImportedSink:
    """One Pexip event sink as a `[[sink]]`: its keys in file order, and its password kept apart."""

    pexip_name: str
    pexip_id: int | None
    resource_uri: str | None
    name: str
    keys: dict[str, Any]
    password: str = ""
    locations: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """Everything the output will hold, and what the operator is told about it."""

    node: dict[str, str]
    tuning: dict[str, float | int] = field(default_factory=dict)
    sinks: list[ImportedSink] = field(default_factory=list)
    location_names: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def sink_name(pexip_name: str, pexip_id: int | None, taken: set[str]) -> str:
    """A `[[sink]].name` for Pexip's free-text name: letters, digits, '_', '.', '-', unique."""
    base = NOT_A_NAME_RE.sub("-", pexip_name).strip("-._")[:60] or f"sink-{pexip_id or len(taken) + 1}"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list", float: "a number"}


def _field(path: str, what: str, obj: dict[str, Any], key: str, kind: type) -> Any:
    """obj[key] checked against its Pexip type (float: any number); None for absent or null."""
    value = obj.get(key)
    if value is None:
        return None
    ok = isinstance(value, (int, float) if kind is float else kind)
    if not ok or (kind in (int, float) and isinstance(value, bool)):
        raise AnswerError(f"{path}: {what}: {key} must be {TYPE_NAMES[kind]} (got {type(value).__name__})")
    return value


def map_sink(path: str, index: int, obj: dict[str, Any], taken: set[str]) -> ImportedSink:
    what = f"event sink {index + 1}"
    values = {key: _field(path, what, obj, key, kind) for key, kind in SINK_TYPES.items()}
    if not values["name"] or not values["url"]:
        raise AnswerError(f"{path}: {what} has no {'name' if not values['name'] else 'url'}")
    pexip_id = obj.get("id") if isinstance(obj.get("id"), int) else None
    uri = obj.get("resource_uri") if isinstance(obj.get("resource_uri"), str) else None
    if pexip_id is None and uri and uri_kind_and_id(uri):
        pexip_id = uri_kind_and_id(uri)[1]
    # An empty string is the default of description and username: said by leaving the key out.
    keys = {ours: values[theirs] for theirs, ours in SINK_FIELDS.items() if values[theirs] not in (None, "")}
    name = sink_name(values["name"], pexip_id, taken)
    return ImportedSink(values["name"], pexip_id, uri, name, keys, values["password"] or "")


def map_sinks(plan: Plan, path: str) -> None:
    objects = read_answer(path, "event_sink")
    taken: set[str] = set()
    plan.sinks = [map_sink(path, i, obj, taken) for i, obj in enumerate(objects)]
    plan.sources["event sinks"] = path
    if not plan.sinks:
        plan.warnings.append(f"{path} lists no event sinks: the config has none")
    for s in plan.sinks:
        _warn_sink(plan, s)
    _warn_unused(plan, "event_sink", objects)


def _warn_sink(plan: Plan, s: ImportedSink) -> None:
    if s.name != s.pexip_name:
        why = (
            "another sink has that name"
            if NOT_A_NAME_RE.sub("-", s.pexip_name) == s.pexip_name
            else "a sink name is letters, digits, '_', '.' and '-'"
        )
        plan.warnings.append(f"event sink {s.pexip_name!r} is named {s.name!r} ({why})")
    if s.keys.get("username") and not s.password:
        plan.warnings.append(
            f"sink {s.name!r} has a username but the export has no password: "
            f"add password_file by hand before starting the agent"
        )
    if s.password and not s.keys.get("username"):
        s.password = ""  # Basic auth needs both: no file for a password that would never be sent
        plan.warnings.append(
            f"sink {s.name!r} has a password but no username: no Basic auth is sent, and the password is left out"
        )
    if s.password != s.password.strip():
        plan.warnings.append(
            f"sink {s.name!r}: its password starts or ends with white space, which a "
            f"password_file cannot carry (it is read stripped)"
        )


def _sink_for(ref: Any, sinks: list[ImportedSink]) -> ImportedSink | str:
    """The sink a location's event_sinks entry (a resource URI or an object) means, or how to name the miss."""
    if isinstance(ref, dict):
        ref = ref.get("resource_uri") if ref.get("resource_uri") is not None else ref.get("id")
    found = uri_kind_and_id(ref) if isinstance(ref, str) else None
    wanted = found[1] if found and found[0] == "event_sink" else ref
    for s in sinks:
        if (isinstance(wanted, int) and not isinstance(wanted, bool) and s.pexip_id == wanted) or (
            isinstance(ref, str) and s.resource_uri == ref
        ):
            return s
    return repr(ref)[:100]


def map_locations(plan: Plan, path: str) -> None:
    objects = read_answer(path, "system_location")
    plan.sources["locations"] = path
    for i, obj in enumerate(objects):
        name = _field(path, f"location {i + 1}", obj, "name", str)
        refs = _field(path, f"location {name or i + 1}", obj, "event_sinks", list) or []
        if not name:
            raise AnswerError(f"{path}: location {i + 1} has no name")
        plan.location_names.append(name)
        for ref in refs:
            sink = _sink_for(ref, plan.sinks)
            if isinstance(sink, str):
                plan.warnings.append(f"location {name!r} uses event sink {sink}, which is not in the event sinks file")
            elif name not in sink.locations:
                sink.locations.append(name)
    _warn_unused(plan, "system_location", objects)


def map_global(plan: Plan, path: str) -> None:
    objects = read_answer(path, "global")
    if len(objects) != 1:
        raise AnswerError(f"{path} holds {len(objects)} global objects; the API has exactly one")
    plan.sources["global"] = path
    for theirs, ours in TUNING_FIELDS.items():
        value = _field(path, "global", objects[0], theirs, float)
        if value is not None:
            plan.tuning[ours] = int(value) if ours == "max_background_posts" and value == int(value) else value
    _warn_unused(plan, "global", objects)


def _warn_unused(plan: Plan, kind: str, objects: list[dict[str, Any]]) -> None:
    unused = sorted({key for obj in objects for key in obj} - USED_FIELDS[kind])
    if unused:
        plan.warnings.append(f"{kind}: {len(unused)} field(s) not used: {', '.join(unused)}")


def build_plan(args: argparse.Namespace) -> Plan:
    """The whole mapping, from the three files and the node options."""
    plan = Plan(node={"address": args.address, "location": args.location, "role": args.role})
    map_sinks(plan, args.event_sinks)
    if args.locations:
        map_locations(plan, args.locations)
        if args.location not in plan.location_names:
            plan.warnings.append(
                f"--location {args.location!r} is none of the locations in {args.locations} "
                f"({', '.join(map(repr, plan.location_names)) or 'none'}): no sink runs here"
            )
    else:
        plan.warnings.append("no --locations file: every sink gets locations = [] (it runs nowhere until you add some)")
    if args.global_:
        map_global(plan, args.global_)
    for s in plan.sinks:
        if not s.locations and args.locations:
            plan.warnings.append(f"sink {s.name!r} is used by no location: locations = [] (it runs nowhere)")
    return plan


def main(args: argparse.Namespace) -> int:
    from agent.pexip import output as pexip_output

    try:
        plan = build_plan(args)
        pexip_output.prove_it_passes_check(plan, with_passwords=bool(args.output))
        written = pexip_output.write(plan, args.output)
    except (AnswerError, pexip_output.OutputError) as exc:
        print(f"eventsink-agent: {exc}", file=sys.stderr, flush=True)
        return 1
    for line in plan.warnings:
        print(f"warning: {line}", file=sys.stderr, flush=True)
    if args.output:
        print(
            f"wrote {', '.join(written)}; check it with: eventsink-agent check --config {written[0]}",
            file=sys.stderr,
            flush=True,
        )
    return 0

"""docs/events.md, generated from the event types in bus/events.py.

Owns turning each event's `data` type (a msgspec Struct) into a table of its
fields: type in words, whether the broker requires it, and the description
kept beside the field (`Meta(description=...)`). Events that share a base type
(the three conference events, the three participant events) share one table,
with each event's own extra fields after it; nested objects (media streams,
samples) get a table each. A field without a description is an error here.
"""

from __future__ import annotations

import msgspec
import msgspec.inspect as mi

from bus.events import EVENT_DATA_TYPES, VERSION_2_ONLY_EVENTS, required_data_field
from common.vocabulary import LIFECYCLE_EVENTS_OF_VERSION, AgentEvent

_SCALARS = {mi.StrType: "string", mi.IntType: "integer", mi.FloatType: "number", mi.BoolType: "boolean"}

INTRO = """\
# Events and their fields

Generated from the event types in `bus/events.py` by `python -m agent.reference --write`: do not
edit by hand. The broker validates every bus message with these very types, and
`eventsink-agent schema` prints them as an OpenAPI or Swagger document, so the three agree.

Each table lists the fields of an event's `data`. A **required** field must be present or the
message is rejected (`missing_field`); every other field may be left out, but when present it must
have the type given (`wrong_type` otherwise; `null` only where the type says so). Fields not listed
are accepted and forwarded unchanged: receivers should ignore fields they do not know. The envelope
around `data` (`node`, `seq`, `version`, `time`, `event`) is described in [delivery.md](delivery.md),
the bus frames that carry an event to the agent in [bus.md](bus.md).
"""


def _anchor(struct: type) -> str:
    return struct.__name__.lower()


def type_words(t: mi.Type) -> str:
    """A field's type, in words, linking nested objects to their table."""
    if isinstance(t, mi.Metadata):
        return type_words(t.type)
    if type(t) in _SCALARS:
        return _SCALARS[type(t)]
    if isinstance(t, mi.ListType):
        item = type_words(t.item_type)
        return "list of " + (item + "s" if type(t.item_type) in _SCALARS else item)
    if isinstance(t, mi.UnionType):
        return " or ".join(type_words(u) for u in t.types)
    if isinstance(t, mi.NoneType):
        return "null"
    if isinstance(t, mi.StructType):
        return f"[{t.cls.__name__}](#{_anchor(t.cls)})"
    raise ValueError(f"no words for the event field type {t!r}")


def _nested(t: mi.Type) -> list[type]:
    """The Struct types a field's type holds."""
    if isinstance(t, mi.Metadata):
        return _nested(t.type)
    if isinstance(t, mi.ListType):
        return _nested(t.item_type)
    if isinstance(t, mi.UnionType):
        return [s for u in t.types for s in _nested(u)]
    return [t.cls] if isinstance(t, mi.StructType) else []


def _own_fields(struct: type, base: type | None) -> list[mi.Field]:
    inherited = {f.name for f in msgspec.structs.fields(base)} if base else set()
    return [f for f in mi.type_info(struct).fields if f.name not in inherited]


def field_table(struct: type, base: type | None = None) -> str:
    lines = ["| field | type | required | description |", "| --- | --- | --- | --- |"]
    for f in _own_fields(struct, base):
        meta = f.type.extra_json_schema if isinstance(f.type, mi.Metadata) else None
        if not meta or not meta.get("description"):
            raise ValueError(f"{struct.__name__}.{f.name} has no description")
        desc = meta["description"].replace("|", "\\|")
        lines.append(f"| `{f.name}` | {type_words(f.type)} | {'**required**' if f.required else ''} | {desc} |")
    return "\n".join(lines) + "\n"


def _versions(event: str) -> str:
    return "version 2 sinks only" if event in VERSION_2_ONLY_EVENTS else "versions 1 and 2"


def _doc(struct: type) -> str:
    return (struct.__doc__ or "").strip().split("\n")[0]


def events_markdown() -> str:
    """The text of docs/events.md."""
    parts = [
        INTRO,
        "## The events on the bus\n",
        "| event | sent to | required field | what happened |",
        "| --- | --- | --- | --- |",
    ]
    for event, tp in EVENT_DATA_TYPES.items():
        what = _doc(tp).split(": ", 1)[-1]
        parts.append(f"| [`{event}`](#{event}) | {_versions(event)} | `{required_data_field(event)}` | {what} |")
    parts[-1] += "\n"
    lifecycle = list(dict.fromkeys(e for evs in LIFECYCLE_EVENTS_OF_VERSION.values() for e in evs))
    parts.append(
        "The agent makes " + ", ".join(f"`{e}`" for e in lifecycle) + f" and `{AgentEvent.BULK}` itself "
        "(a process may not publish them): the lifecycle events carry `data` = `{}` and are described, with "
        "the bulk envelope, in [delivery.md](delivery.md).\n"
    )
    nested: list[type] = []
    shown_bases: set[type] = set()
    for event, tp in EVENT_DATA_TYPES.items():
        base = tp.__mro__[1]
        grouped = base.__name__ != "_Data"
        if grouped and base not in shown_bases:
            shown_bases.add(base)
            siblings = [e for e, t in EVENT_DATA_TYPES.items() if t.__mro__[1] is base]
            parts.append(f"## Fields shared by {', '.join(f'`{e}`' for e in siblings)}\n")
            parts.append("Each of these events has the fields below; the sections after add its own, if any.\n")
            parts.append(field_table(base))
        parts.append(f"## `{event}`\n")
        what = _doc(tp).split(": ", 1)[-1].rstrip(".")
        parts.append(f"{what[:1].upper()}{what[1:]}. Sent to {_versions(event)}.\n")
        own = _own_fields(tp, base if grouped else None)
        parts.append(field_table(tp, base if grouped else None) if own else "No fields of its own.\n")
        for f in mi.type_info(tp).fields:
            nested += [s for s in _nested(f.type) if s not in nested]
    for struct in nested:
        parts.append(f"## {struct.__name__}\n")
        parts.append(_doc(struct) + "\n")
        parts.append(field_table(struct))
    return "\n".join(parts)

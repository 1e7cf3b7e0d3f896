"""docs/config.md, generated from the config types in common/config.py.

Owns turning each config section (a msgspec Struct) into a table of its keys:
the TOML type, the default (or "required") and the one-line description kept
in the Struct's `KEY_HELP`, beside the fields. A key without a description, or
a description of a key that no longer exists, is an error here rather than a
silent gap in the document.
"""

from __future__ import annotations

import json
import typing
from typing import Any

import msgspec

from common.config_types import (
    DEFAULT_PATH,
    RESOLVED_FIELDS,
    AgentConfig,
    Config,
    ConsoleConfig,
    NodeConfig,
    SinkConfig,
    TuningConfig,
)
from common.http_options import AGENT_HEADERS, RETRIED_STATUSES

# (TOML heading, Struct) in the order of the document and of packaging/etc/agent.toml.
SECTIONS: tuple[tuple[str, type[msgspec.Struct]], ...] = (
    ("[node]", NodeConfig),
    ("[agent]", AgentConfig),
    ("[tuning]", TuningConfig),
    ("[[sink]]", SinkConfig),
    ("[console]", ConsoleConfig),
)

_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}

INTRO = f"""\
# Configuration keys

Generated from the config types in `common/config.py` by `python -m agent.reference --write`:
do not edit by hand. The descriptions live beside the fields (`KEY_HELP`).

The file is TOML, by default `{DEFAULT_PATH}`. Unknown keys are errors, and
`eventsink-agent check --config PATH` reports every problem with its key and line.
Commented examples: the Configuration section of README.md and `packaging/etc/agent.toml`.
The files these keys name are described in [files.md](files.md).
"""


def check_rules() -> str:
    """What `check` refuses beyond a key's type, and what it only warns about."""
    own = ", ".join(f"`{h.title()}`" for h in sorted(AGENT_HEADERS))
    retried = " or ".join(map(str, RETRIED_STATUSES))
    return f"""\
## What `check` refuses beyond the types

Besides an unknown key, a missing required key or a value of the wrong type, `check` (and `run`, and a
reload) refuses, naming the key:

- a `node.address` that is not an IP address, an empty `node.location`, a `node.role` not listed;
- an `[agent]` `max_journal_mb` or `max_message_kb` not above 0, a negative `retention_hours`, a
  `metrics_listen` that is not `HOST:PORT`, a `publish_endpoint` that is not `ipc://` or `tcp://`, a
  relative directory or socket path, a socket path of 107 characters or more;
- a negative `[tuning]` value, a zero timeout, backoff or `max_background_posts`, a
  `max_retry_backoff` below `initial_retry_backoff`;
- a sink `name` used twice, a `url` that is not `http://` or `https://` with a host, a `version` other
  than 1 or 2, both `password` and `password_file`, an unknown event in `events`;
- a `headers` name that is not an HTTP token, or one the agent sets itself ({own}, any
  `webhook-*`, and `Authorization` when `username` or `bearer_token_file` is set), or a value with a
  line break;
- `bearer_token_file` together with `username`; a `password_file` or `bearer_token_file` that cannot be
  read or is empty;
- `client_cert` without `client_key` or the other way round, a file that is missing or not PEM, and a
  key file other users can read;
- a `proxy` that is not an `http://` or `https://` URL; a `compression` or `http_version` not listed;
- a `dead_letter_statuses` entry outside 400-499 or equal to {retried} (those are always retried,
  never poison); a negative `max_rate`.

It only warns (exit 0) about `verify_tls = false`, a sink not used at this node's location (or with
`locations = []`, which runs nowhere), a `client_cert` on an `http://` URL, and a password file other
users can read. The rules of the browser console's `[console]` keys are in [console.md](console.md).
"""


def toml_type(tp: Any) -> str:
    """The TOML type a field accepts, in words."""
    if tp in _SCALARS:
        return _SCALARS[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        return f"array of {toml_type(args[0])}s"
    if origin is dict:
        return f"table of {toml_type(args[1])}s"
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return "table"
    raise ValueError(f"no TOML name for the config type {tp!r}")


def toml_value(value: Any) -> str:
    """A default as it would be written in the TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"no TOML spelling for the default {value!r}")


def default_of(field: msgspec.structs.FieldInfo) -> str:
    if field.required:
        return "required"
    value = field.default if field.default_factory is msgspec.NODEFAULT else field.default_factory()
    if isinstance(value, msgspec.Struct):
        return "(all defaults)"
    return f"`{toml_value(value)}`"


def described_fields(struct: type[msgspec.Struct]) -> list[tuple[msgspec.structs.FieldInfo, str]]:
    """The struct's file keys with their descriptions; raises when the two disagree."""
    fields = [f for f in msgspec.structs.fields(struct) if not (struct is SinkConfig and f.name in RESOLVED_FIELDS)]
    names = {f.name for f in msgspec.structs.fields(struct)}
    missing = [f.name for f in fields if f.name not in struct.KEY_HELP]
    stale = sorted(set(struct.KEY_HELP) - names)
    if missing or stale:
        raise ValueError(f"{struct.__name__}.KEY_HELP: no description for {missing}, descriptions of no key {stale}")
    return [(f, struct.KEY_HELP[f.name]) for f in fields]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def section_table(heading: str, struct: type[msgspec.Struct]) -> str:
    about = Config.KEY_HELP[heading.strip("[]")]
    lines = [f"## `{heading}`", "", _cell(about[:1].upper() + about[1:]) + ".", ""]
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for field, help_text in described_fields(struct):
        lines.append(f"| `{field.name}` | {toml_type(field.type)} | {_cell(default_of(field))} | {_cell(help_text)} |")
    return "\n".join(lines) + "\n"


def config_markdown() -> str:
    """The text of docs/config.md."""
    described_fields(Config)  # every top-level section has its description
    parts = [INTRO]
    for heading, struct in SECTIONS:
        parts.append(section_table(heading, struct))
    parts.append(
        "Only `node.address`, `node.location` and each sink's `name`, `url` and `locations` are required.\n"
        "`[[sink]]` may appear any number of times; a node runs the sinks that list its `location`.\n"
    )
    parts.append(check_rules())
    return "\n".join(parts)

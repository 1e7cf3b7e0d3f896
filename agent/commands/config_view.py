"""`config`: the running configuration with every secret shown as `***`, and what
`check` says of the config file now (`GET /v1/config`, for the console's
Configuration page, docs/console.md); not an eventsinkctl subcommand. Its work
is agent/server/actions/config_view.py."""

from __future__ import annotations

import json

from agent.commands.unit import Command

TYPE_CHECKING = False  # typing only for type checkers: eventsinkctl starts without it (agent/commands/__init__.py)
if TYPE_CHECKING:
    from typing import Any


def render_config(body: Any) -> str:
    return json.dumps(body, indent=2)


CONFIG = Command(
    "config",
    "the running configuration (secrets as ***) and what check says of the config file",
    "GET",
    "/v1/config",
    render=render_config,
    in_ctl=False,
)

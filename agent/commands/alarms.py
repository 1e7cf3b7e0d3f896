"""`alarms`: the active alarms (docs/control-api.md, `GET /v1/alarms`). Its work
is agent/server/actions/alarms.py."""

from __future__ import annotations

from agent.client.render import cell as _cell
from agent.client.render import format_time, list_table
from agent.commands.unit import Command

TYPE_CHECKING = False  # typing only for type checkers: eventsinkctl starts without it (agent/commands/__init__.py)
if TYPE_CHECKING:
    from typing import Any


def render_alarms(body: Any) -> str:
    return list_table(
        body,
        "no active alarms",
        ["ALARM", "SINK", "RAISED AT", "DETAIL"],
        lambda a: [_cell(a.get("name")), _cell(a.get("sink")), format_time(a.get("raised_at")), _cell(a.get("detail"))],
    )


ALARMS = Command("alarms", "show the active alarms", "GET", "/v1/alarms", render=render_alarms)

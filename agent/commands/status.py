"""`status`: each sink's state, backlog, deliveries, failures, backoff and alarms,
and the bus's figures (docs/control-api.md, `GET /v1/status`). Its work is
agent/server/actions/status.py."""

from __future__ import annotations

from agent.client.render import alarm_names as _alarm_names
from agent.client.render import cell as _cell
from agent.client.render import format_seconds, format_time, table
from agent.client.render import total as _total
from agent.commands.unit import Command

TYPE_CHECKING = False  # typing only for type checkers: eventsinkctl starts without it (agent/commands/__init__.py)
if TYPE_CHECKING:
    from typing import Any

STATUS_COLUMNS = [
    "SINK",
    "STATE",
    "PID",
    "BACKLOG",
    "IN-FLIGHT",
    "DELIVERED",
    "FAILURES",
    "BACKOFF",
    "ALARMS",
    "LAST RESTART",
]


def render_status(body: Any) -> str:
    if not isinstance(body, dict):
        return _cell(body)
    out = []
    node = body.get("node")
    if isinstance(node, dict) and node:
        label = ", ".join(f"{k} {_cell(v)}" for k, v in node.items() if not isinstance(v, (dict, list)))
        out.append(f"node: {label}")
    bus = body.get("bus")
    if isinstance(bus, dict) and bus:
        label = ", ".join(f"{k} {_total(v)}" for k, v in bus.items() if not isinstance(v, list))
        if label:
            out.append(f"bus: {label}")
    sinks = body.get("sinks") or []
    if not sinks:
        out.append("no sinks at this node's location")
        return "\n".join(out)
    rows = []
    for s in sinks:
        if not isinstance(s, dict):
            continue
        rows.append(
            [
                _cell(s.get("name")),
                _cell(s.get("state")),
                _cell(s.get("pid")),
                _cell(s.get("backlog")),
                _cell(s.get("in_flight")),
                _cell(s.get("delivered")),
                _cell(s.get("failures")),
                format_seconds(s.get("current_backoff")),
                _alarm_names(s.get("alarms")),
                format_time(s.get("last_attempted_restart")),
            ]
        )
    if out:
        out.append("")
    out.append(table(STATUS_COLUMNS, rows))
    return "\n".join(out)


STATUS = Command(
    "status",
    "show each sink's state, backlog, deliveries, failures, backoff and alarms",
    "GET",
    "/v1/status",
    render=render_status,
)

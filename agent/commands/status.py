"""`status`: each sink's state, backlog, deliveries, failures, backoff and alarms,
and the bus's figures (docs/control-api.md, `GET /v1/status`)."""

from __future__ import annotations

from typing import Any

from common.config import redact_url
from agent.commands.unit import Command
from agent.render import alarm_names as _alarm_names
from agent.render import cell as _cell
from agent.render import format_seconds, format_time, table
from agent.render import total as _total


def status(supervisor: Any, params: dict[str, Any]) -> dict:
    node, broker = supervisor.config.node, supervisor.fleet.broker
    return {
        "node": {"address": node.address, "location": node.location, "role": node.role},
        "sinks": [sink_status(supervisor, child) for child in supervisor.fleet.sinks.values()],
        "bus": {
            "received": broker.received,
            "rejected": broker.rejected,
            "journal_bytes": broker.journal_bytes,
            "journal_full": broker.journal_full,
            "broker_pid": broker.pid,
            "broker_restarts": broker.restarts,
            "state": broker.state.value,
        },
        "deliveries": {  # GET /v1/deliveries?follow=1: its open streams, the workers streaming for them
            "followers": len(supervisor.publishers.feed.followers),
            "streaming": sorted(c.name for c in supervisor.fleet.sinks.values()
                                if c.report is not None and c.report.streaming),
        },
    }


def sink_status(supervisor: Any, child: Any) -> dict:
    totals = child.totals()
    return {
        "name": child.name,
        "description": child.config.description,
        "url": redact_url(child.config.url),
        "locations": list(child.config.locations),
        "version": child.config.version,
        "state": child.state.value,
        "pid": child.pid,
        "backlog": child.backlog,
        "in_flight": child.in_flight,
        "delivered": totals.delivered,
        "failures": totals.failures,
        "current_backoff": child.current_backoff,
        "last_attempted_restart": child.last_attempted_restart,
        "alarms": [a.name for a in supervisor.alarms.for_sink(child.name)],
        "restarts": child.restarts,
        "dead_letters": child.dead_letters,
    }


STATUS_COLUMNS = ["SINK", "STATE", "PID", "BACKLOG", "IN-FLIGHT", "DELIVERED", "FAILURES", "BACKOFF", "ALARMS", "LAST RESTART"]


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
    "status", "show each sink's state, backlog, deliveries, failures, backoff and alarms",
    "GET", "/v1/status", status, render_status,
)



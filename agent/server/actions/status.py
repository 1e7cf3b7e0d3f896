"""`status` on the main loop: each sink's figures and the bus's, read off the
fleet (docs/control-api.md, `GET /v1/status`)."""

from __future__ import annotations

from typing import Any

from agent.commands import status as command
from agent.server.actions.unit import Action
from common.config_types import redact_url


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
            "followers": len(supervisor.reports.feed.followers),
            "streaming": sorted(
                c.name for c in supervisor.fleet.sinks.values() if c.report is not None and c.report.streaming
            ),
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


STATUS = Action(command.STATUS, status)

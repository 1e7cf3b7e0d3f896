"""`restart` on the main loop (docs/control-api.md, `POST /v1/sinks/NAME/restart`).
`restart_publisher` is also what a replay and a redrive do once they have
placed the sink's cursor or marked its dead letters."""

from __future__ import annotations

import logging
from typing import Any

from agent.commands import restart as command
from agent.server.actions.unit import Action, sink_child
from alarms.registry import iso_utc
from common.logs import SUPPORT

support = logging.getLogger(SUPPORT)


def restart_publisher(supervisor: Any, child: Any, why: str) -> None:
    """Clear CHILD's alarms, set `last_attempted_restart` and give it a fresh worker."""
    for alarm in supervisor.alarms.clear_sink(child.name):
        support.warning("alarm cleared: %s for sink %s (%s requested)", alarm.name, child.name, why)
    child.last_attempted_restart = iso_utc(supervisor.clock.wall())
    supervisor.fleet.restart(child, supervisor.clock.monotonic())


def restart(supervisor: Any, params: dict[str, Any]) -> dict:
    """Clear the sink's alarms and give it a fresh worker (eventsink_started at seq 1)."""
    child = sink_child(supervisor, params)
    restart_publisher(supervisor, child, "restart")
    return {"restarted": child.name}


RESTART = Action(command.RESTART, restart, refused_while_stopping=True)

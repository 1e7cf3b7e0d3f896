"""`restart`: clear a sink's alarms and give it a fresh worker, so that its
publisher starts again at `seq` 1 and its whole backlog is delivered
(docs/control-api.md, `POST /v1/sinks/NAME/restart`). `restart_publisher` is also
what a replay does once it has placed the sink's cursor."""

from __future__ import annotations

import logging
from typing import Any

from common.logs import SUPPORT
from agent.commands.unit import Command, sink_child
from agent.render import one_field
from alarms.registry import iso_utc

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


render_restart = one_field("restarted", "restarted sink {}", "restarted")


RESTART = Command(
    "restart", "clear a sink's alarms and start its publisher again (its backlog is delivered)",
    "POST", "/v1/sinks/{sink}/restart", restart, render_restart,
    field_help=(("sink", "the sink's name, as in the config"),), refused_while_stopping=True,
)

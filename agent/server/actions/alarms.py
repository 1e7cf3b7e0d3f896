"""`alarms` on the main loop: the alarm registry's active alarms (docs/control-api.md, `GET /v1/alarms`)."""

from __future__ import annotations

from typing import Any

from agent.commands import alarms as command
from agent.server.actions.unit import Action


def alarms(supervisor: Any, params: dict[str, Any]) -> list:
    return [a.as_dict() for a in supervisor.alarms.active()]


ALARMS = Action(command.ALARMS, alarms)

"""`shutdown` on the main loop: begin the graceful stop (docs/control-api.md)."""

from __future__ import annotations

from typing import Any

from agent.commands import shutdown as command
from agent.server.actions.unit import Action


def shutdown(supervisor: Any, params: dict[str, Any]) -> dict:
    supervisor.begin_stop(str(params.get("why") or "shutdown requested"))
    return {"stopping": True}


SHUTDOWN = Action(command.SHUTDOWN, shutdown)

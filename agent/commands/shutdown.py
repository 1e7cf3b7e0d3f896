"""`shutdown`: stop gracefully, workers first, then the broker. Not on the
control socket: SIGTERM, SIGINT and the agent itself give it."""

from __future__ import annotations

from typing import Any

from agent.commands.schema import render_raw
from agent.commands.unit import Command


def shutdown(supervisor: Any, params: dict[str, Any]) -> dict:
    supervisor.begin_stop(str(params.get("why") or "shutdown requested"))
    return {"stopping": True}


SHUTDOWN = Command("shutdown", "stop gracefully: workers first, then the broker", "", "", shutdown, render_raw, in_ctl=False)

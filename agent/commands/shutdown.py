"""`shutdown`: stop gracefully, workers first, then the broker. Not on the
control socket: SIGTERM, SIGINT and the agent itself give it
(docs/control-api.md). Its work is agent/server/actions/shutdown.py."""

from __future__ import annotations

from agent.commands.unit import Command, render_raw

SHUTDOWN = Command(
    "shutdown", "stop gracefully: workers first, then the broker", "", "", render=render_raw, in_ctl=False
)

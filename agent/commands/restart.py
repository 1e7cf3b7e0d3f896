"""`restart`: clear a sink's alarms and give it a fresh worker, so that its
publisher starts again at `seq` 1 and its whole backlog is delivered
(docs/control-api.md, `POST /v1/sinks/NAME/restart`). Its work is
agent/server/actions/restart.py."""

from __future__ import annotations

from agent.client.render import one_field
from agent.commands.unit import Command

SINK_HELP = (("sink", "the sink's name, as in the config"),)

render_restart = one_field("restarted", "restarted sink {}", "restarted")


RESTART = Command(
    "restart",
    "clear a sink's alarms and start its publisher again (its backlog is delivered)",
    "POST",
    "/v1/sinks/{sink}/restart",
    render=render_restart,
    field_help=SINK_HELP,
)

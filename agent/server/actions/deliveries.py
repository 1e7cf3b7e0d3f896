"""`deliveries` and `follow` on the agent (docs/control-api.md).

`deliveries` is asked of the sink's worker as `attempts` is (agent/server/actions/attempts.py's
`AttemptAsks`, sending `Deliveries`). `follow` answers a `Follower`
(agent/server/deliveries_feed.py), a stream the control server writes as it fills
(agent/server/control_http.py's `serve_stream`).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from agent.client.errors import CommandError
from agent.commands import deliveries as command
from agent.commands.deliveries import FOLLOW_VALUES, parse_deliveries_limit
from agent.server.actions.unit import Action, sink_child


def deliveries(supervisor: Any, params: dict[str, Any]) -> Future | list:
    """The sink's most recent POSTs as sent, newest first (later: the worker answers)."""
    child = sink_child(supervisor, params)
    try:
        limit = parse_deliveries_limit(params.get("limit"))
    except ValueError as exc:
        raise CommandError(400, str(exc)) from None
    return supervisor.reports.deliveries.ask(child, limit)


def follow(supervisor: Any, params: dict[str, Any]) -> Any:
    """A new follower of every sink's POSTs (or the `sink` one's): the stream the server writes."""
    if str(params.get("follow", "")).lower() not in FOLLOW_VALUES:
        raise CommandError(
            400,
            "GET /v1/deliveries is a stream: ask for it with follow=1 "
            "(a sink's recent POSTs are at /v1/sinks/NAME/deliveries)",
        )
    sink = params.get("sink")
    if sink is not None:
        sink = sink_child(supervisor, params).name
    return supervisor.reports.feed.follow(sink, supervisor.wake)


DELIVERIES = Action(command.DELIVERIES, deliveries)
FOLLOW = Action(command.FOLLOW, follow)

"""`replay`: send a sink's retained events again, from a point in time
(docs/delivery.md and docs/control-api.md, `POST /v1/sinks/NAME/replay`,
`eventsinkctl replay`). Its work is agent/server/actions/replay.py.

The client turns `--since` into Unix seconds (an age counts back from the
operator's clock) and sends it in the JSON body with `dry_run`.
"""

from __future__ import annotations

import time

from agent.commands.unit import CliArg, Command
from common.timespec import parse_time

TYPE_CHECKING = False  # typing only for type checkers: eventsinkctl starts without it (agent/commands/__init__.py)
if TYPE_CHECKING:
    from typing import Any

SINCE_HELP = 'Unix seconds, or an ISO 8601 string (an age such as "2h" is taken too)'
DRY_RUN_HELP = "only count the events a replay would send"


def since_to_seconds(value: str) -> float:
    """eventsinkctl's --since, as Unix seconds (an age counts back from this machine's clock)."""
    return parse_time(value, time.time())


def render_replay(body: Any) -> str:
    if not isinstance(body, dict):
        return str(body)
    oldest = body.get("oldest_retained") or "none"
    verb = "would replay" if body.get("dry_run") else "replaying"
    return f"{verb} {body.get('events')} events accepted since {body.get('since')} (oldest retained: {oldest})"


REPLAY = Command(
    "replay",
    "send a sink's retained events again, from --since TIME on (then its backlog and live events)",
    "POST",
    "/v1/sinks/{sink}/replay",
    render=render_replay,
    body=True,
    field_help=(("sink", "the sink's name, as in the config"),),
    cli=(
        CliArg(
            ("--since",),
            "since",
            "body",
            convert=since_to_seconds,
            kwargs={
                "metavar": "TIME",
                "required": True,
                "help": "Unix seconds, ISO 8601 (2026-12-01T08:00:00Z, or with an offset), or an age: 90s, 30m, 2h, 1d",
            },
        ),
        CliArg(("--dry-run",), "dry_run", "body", kwargs={"action": "store_true", "help": DRY_RUN_HELP}),
    ),
)

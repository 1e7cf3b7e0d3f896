"""`attempts`: a sink's most recent POST attempts since its worker started,
newest first (docs/control-api.md, `GET /v1/sinks/NAME/attempts?limit=N`).
Only the worker knows them; how the agent asks it is agent/server/actions/attempts.py.
`parse_limit` is shared: eventsinkctl checks `--limit` with it, the agent `?limit=`.
"""

from __future__ import annotations

from agent.client.render import cell, format_post_duration, list_table
from agent.commands.unit import CliArg, Command

TYPE_CHECKING = False  # typing only for type checkers: eventsinkctl starts without it (agent/commands/__init__.py)
if TYPE_CHECKING:
    from typing import Any

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000  # a larger limit is clamped: the worker keeps no more
COLUMNS = ["TIME", "SEQ", "EVENTS", "WEBHOOK-ID", "OUTCOME", "STATUS", "DURATION", "DETAIL"]


def parse_limit(raw: Any, name: str = "limit", default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    """RAW (a query string value, None: absent) as a limit from 1 to MAXIMUM (DEFAULT when absent);
    ValueError with one sentence."""
    if raw is None:
        return default
    text = str(raw)
    digits = text.lstrip("0")
    if not text.isascii() or not text.isdigit() or not digits:
        raise ValueError(f"{name} must be a whole number of at least 1, not {text[:20]!r}")
    return maximum if len(digits) > len(str(maximum)) else min(int(digits), maximum)


def _cli_limit(value: str) -> int:
    return parse_limit(value, "--limit")


def render_attempts(body: Any) -> str:
    return list_table(
        body,
        "no attempts yet",
        COLUMNS,
        lambda a: [
            cell(a.get("at")),
            cell(a.get("seq")),
            cell(a.get("events")),
            cell(a.get("webhook_id")),
            cell(a.get("outcome")),
            cell(a.get("status")),
            format_post_duration(a.get("duration")),
            cell(a.get("detail")),
        ],
    )


ATTEMPTS = Command(
    "attempts",
    "show a sink's most recent POST attempts since its worker started, newest first",
    "GET",
    "/v1/sinks/{sink}/attempts",
    render=render_attempts,
    query=("limit",),
    field_help=(
        ("sink", "the sink's name, as in the config"),
        (
            "limit",
            f"how many attempts, newest first (default {DEFAULT_LIMIT}; more than {MAX_LIMIT} gives {MAX_LIMIT})",
        ),
    ),
    cli=(
        CliArg(
            ("--limit",),
            "limit",
            "query",
            {"metavar": "N", "help": f"show at most N attempts (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})"},
            convert=_cli_limit,
        ),
    ),
)

"""`deliveries` and `follow`: the POSTs as sent (docs/control-api.md).

`GET /v1/sinks/NAME/deliveries?limit=N` (`eventsinkctl deliveries SINK
[--limit N]`): a sink's most recent POSTs as sent, newest first, with their
request headers and body (secrets as "***"). Only the worker keeps them (its
last 100, sinks/deliveries.py), so it is asked as `attempts` asks.

`GET /v1/deliveries?follow=1[&sink=NAME]`: a stream of NDJSON lines, one per
POST of every sink (or that one) as it completes, until the client closes.
eventsinkctl does not offer it (`curl --unix-socket SOCK -N
'http://agent/v1/deliveries?follow=1'`). Their work is agent/server/actions/deliveries.py.
"""

from __future__ import annotations

from agent.client.render import cell, format_post_duration
from agent.commands.attempts import parse_limit
from agent.commands.unit import CliArg, Command

TYPE_CHECKING = False  # typing only for type checkers: eventsinkctl starts without it (agent/commands/__init__.py)
if TYPE_CHECKING:
    from typing import Any

DEFAULT_LIMIT = 20
MAX_LIMIT = 100  # a larger limit is clamped: the worker keeps no more
FOLLOW_VALUES = ("1", "true", "yes")


def parse_deliveries_limit(raw: Any, name: str = "limit") -> int:
    """RAW as a `deliveries` limit from 1 to MAX_LIMIT (DEFAULT_LIMIT when absent); ValueError."""
    return parse_limit(raw, name, DEFAULT_LIMIT, MAX_LIMIT)


def _cli_limit(value: str) -> int:
    return parse_deliveries_limit(value, "--limit")


def render_deliveries(body: Any) -> str:
    """Each POST as a block: a summary line, its headers, its body; blocks apart by a blank line."""
    if not body:
        return "no POSTs yet"
    if not isinstance(body, list):
        return cell(body)
    blocks = []
    for d in body:
        if not isinstance(d, dict):
            continue
        events = d.get("events")
        lines = [
            f"{cell(d.get('at'))}  seq {cell(d.get('seq'))}  {cell(events)} event{'' if events == 1 else 's'}  "
            f"{cell(d.get('webhook_id'))}  {cell(d.get('outcome'))} {cell(d.get('status'))}  "
            f"{format_post_duration(d.get('duration'))}"
        ]
        headers = d.get("headers")
        if isinstance(headers, dict):
            lines += [f"  {k}: {v}" for k, v in headers.items()]
        lines.append(f"  {cell(d.get('body'))}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def render_stream(body: Any) -> str:  # never rendered: eventsinkctl does not offer `follow`
    return cell(body)


DELIVERIES = Command(
    "deliveries",
    "show a sink's most recent POSTs as sent (headers and body, secrets as ***), newest first",
    "GET",
    "/v1/sinks/{sink}/deliveries",
    render=render_deliveries,
    query=("limit",),
    field_help=(
        ("sink", "the sink's name, as in the config"),
        ("limit", f"how many POSTs, newest first (default {DEFAULT_LIMIT}; more than {MAX_LIMIT} gives {MAX_LIMIT})"),
    ),
    cli=(
        CliArg(
            ("--limit",),
            "limit",
            "query",
            {"metavar": "N", "help": f"show at most N POSTs (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})"},
            convert=_cli_limit,
        ),
    ),
)

FOLLOW = Command(
    "follow",
    "stream every sink's POSTs as sent (or one sink's), one JSON object per line, until the client closes",
    "GET",
    "/v1/deliveries",
    render=render_stream,
    in_ctl=False,
    query=("follow", "sink"),
    media_type="application/x-ndjson",
    field_help=(
        ("follow", "must be 1: the answer is a stream"),
        ("sink", "only this sink's POSTs (default: every sink's)"),
    ),
)

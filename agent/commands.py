"""The control commands, one small unit each (circus style), and the two places
where both ends of the control socket agree.

A `Command` says everything about one operator command: its name and help, the
fields it needs, its HTTP method and path, what the server does
(`action(supervisor, params) -> result`, via `supervisor.request`) and how
`eventsinkctl` renders the answer. The server's route table (agent/control.py)
and `eventsinkctl`'s subcommands (agent/ctl.py) are both built from `COMMANDS`.

Client side: every answer becomes one `Reply` envelope, and `exit_code` is the
one mapping from outcomes to exit codes (0 ok, 1 the agent refused or failed,
2 usage error, 3 agent not running / socket unreachable).
"""

from __future__ import annotations

import datetime
import importlib
import re
import urllib.parse
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from agent.errors import CommandError

SUPERVISOR_TIMEOUT = 10.0  # s the server waits for the supervisor's answer before 503
SCHEMA_FORMATS = ("openapi", "swagger")

EXIT_OK = 0
EXIT_FAILED = 1  # the agent answered: it refused (4xx) or failed (5xx)
EXIT_USAGE = 2  # the operator's command line (argparse uses 2 as well)
EXIT_UNREACHABLE = 3  # no agent to talk to


# ------------------------------------------------------------ the registry


@dataclass(frozen=True)
class Command:
    """One control command: both its server action and its client rendering."""

    name: str
    help: str
    method: str
    path: str  # template; "{field}" segments are required fields taken from the path
    action: Callable[[Any, dict[str, str]], Any]
    render: Callable[[Any], str]
    json_output: bool = False  # eventsinkctl offers --json
    in_ctl: bool = True  # eventsinkctl offers this command
    query: tuple[str, ...] = ()  # optional fields taken from the query string
    field_help: tuple[tuple[str, str], ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        """The required fields, in path order."""
        return tuple(re.findall(r"\{(\w+)\}", self.path))

    def path_pattern(self) -> re.Pattern[str]:
        """The path as a regex; each field matches one non-empty path segment."""
        parts = re.split(r"(\{\w+\})", self.path)
        rx = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
        return re.compile(f"^{rx}$")

    def request_path(self, params: dict[str, str]) -> str:
        """The path for a request, each field percent-encoded as one segment.

        A field from a command line that is not UTF-8 (surrogate escapes) goes as its raw bytes:
        the agent then answers it (e.g. 404 unknown sink) instead of the client raising."""
        return re.sub(
            r"\{(\w+)\}", lambda m: urllib.parse.quote(params[m.group(1)], safe="", errors="surrogateescape"), self.path
        )


def ask(supervisor: Any, command: str, **params: Any) -> Any:
    """Send one request to the supervisor and wait for its answer (503 after SUPERVISOR_TIMEOUT)."""
    future = supervisor.request(command, **params)
    try:
        return future.result(timeout=SUPERVISOR_TIMEOUT)
    except FutureTimeout:
        future.cancel()
        raise CommandError(503, f"the agent did not answer within {SUPERVISOR_TIMEOUT:g} s; try again") from None


def _status(supervisor: Any, params: dict[str, str]) -> Any:
    return ask(supervisor, "status")


def _alarms(supervisor: Any, params: dict[str, str]) -> Any:
    return ask(supervisor, "alarms")


def _restart(supervisor: Any, params: dict[str, str]) -> Any:
    return ask(supervisor, "restart", sink=params["sink"])


def _reload(supervisor: Any, params: dict[str, str]) -> Any:
    return ask(supervisor, "reload")


class RawJSON(str):
    """An action result that already is a JSON document: sent as it is."""


def _schema(supervisor: Any, params: dict[str, str]) -> RawJSON:
    fmt = params.get("format") or "openapi"
    if fmt not in SCHEMA_FORMATS:
        raise CommandError(400, f"unknown schema format {fmt[:40]!r}: use {' or '.join(SCHEMA_FORMATS)}")
    schema = load_schema_module()
    if schema is None:
        raise CommandError(501, "this build of the agent has no event schema")
    return RawJSON(schema.render(fmt))


def _openapi(supervisor: Any, params: dict[str, str]) -> Any:
    # Imported here: the document is built from COMMANDS, so agent.openapi imports this module.
    from agent.openapi import openapi_document

    return openapi_document()


def load_schema_module() -> Any:
    """bus.schema, imported on first use; None when this build does not have it."""
    try:
        return importlib.import_module("bus.schema")
    except ModuleNotFoundError as exc:
        if exc.name not in ("bus.schema", "bus"):
            raise
        return None


# ------------------------------------------------------------ rendering (eventsinkctl)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def format_seconds(value: Any) -> str:
    """A backoff or duration: '-' when zero or absent, else '45s', '2m30s', '1h5m'."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        return "-"
    if value < 10:
        return f"{value:.3g}s"
    secs = int(round(value))
    h, rest = divmod(secs, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m" if m else f"{h}h"
    if m:
        return f"{m}m{s}s" if s else f"{m}m"
    return f"{s}s"


def format_time(value: Any) -> str:
    """A point in time: unix seconds shown in local time; strings (ISO 8601) as given."""
    if value is None or value == "" or value == 0:
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")
        except (OverflowError, OSError, ValueError):
            return str(value)
    return str(value)


def _total(value: Any) -> str:
    """A scalar as a cell; a {reason: count} map as its total."""
    if isinstance(value, dict):
        nums = [v for v in value.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return _cell(sum(nums)) if len(nums) == len(value) else "-"
    return _cell(value)


def _alarm_names(alarms: Any) -> str:
    if not alarms:
        return "-"
    if not isinstance(alarms, list):
        return _cell(alarms)
    names = [a.get("name", "?") if isinstance(a, dict) else str(a) for a in alarms]
    return ", ".join(names)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for r in [headers, *rows]:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths[:-1])] + [r[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


STATUS_COLUMNS = ["SINK", "STATE", "PID", "BACKLOG", "IN-FLIGHT", "DELIVERED", "FAILURES", "BACKOFF", "ALARMS", "LAST RESTART"]


def render_status(body: Any) -> str:
    if not isinstance(body, dict):
        return _cell(body)
    out = []
    node = body.get("node")
    if isinstance(node, dict) and node:
        label = ", ".join(f"{k} {_cell(v)}" for k, v in node.items() if not isinstance(v, (dict, list)))
        out.append(f"node: {label}")
    bus = body.get("bus")
    if isinstance(bus, dict) and bus:
        label = ", ".join(f"{k} {_total(v)}" for k, v in bus.items() if not isinstance(v, list))
        if label:
            out.append(f"bus: {label}")
    sinks = body.get("sinks") or []
    if not sinks:
        out.append("no sinks at this node's location")
        return "\n".join(out)
    rows = []
    for s in sinks:
        if not isinstance(s, dict):
            continue
        rows.append(
            [
                _cell(s.get("name")),
                _cell(s.get("state")),
                _cell(s.get("pid")),
                _cell(s.get("backlog")),
                _cell(s.get("in_flight")),
                _cell(s.get("delivered")),
                _cell(s.get("failures")),
                format_seconds(s.get("current_backoff")),
                _alarm_names(s.get("alarms")),
                format_time(s.get("last_attempted_restart")),
            ]
        )
    if out:
        out.append("")
    out.append(table(STATUS_COLUMNS, rows))
    return "\n".join(out)


def render_alarms(body: Any) -> str:
    if not body:
        return "no active alarms"
    if not isinstance(body, list):
        return _cell(body)
    rows = [
        [_cell(a.get("name")), _cell(a.get("sink")), format_time(a.get("raised_at")), _cell(a.get("detail"))]
        for a in body
        if isinstance(a, dict)
    ]
    return table(["ALARM", "SINK", "RAISED AT", "DETAIL"], rows)


def render_restart(body: Any) -> str:
    name = body.get("restarted") if isinstance(body, dict) else None
    return f"restarted sink {name}" if name else "restarted"


def render_reload(body: Any) -> str:
    if not isinstance(body, dict) or not body:
        return "config reloaded"
    parts = []
    for key, value in body.items():
        if isinstance(value, list):
            parts.append(f"{key}: {', '.join(map(str, value)) if value else '-'}")
        elif not isinstance(value, dict):
            parts.append(f"{key}: {_cell(value)}")
    return "config reloaded" + (f" ({'; '.join(parts)})" if parts else "")


def render_raw(body: Any) -> str:
    return body if isinstance(body, str) else str(body)


COMMANDS: tuple[Command, ...] = (
    Command(
        "status", "show each sink's state, backlog, deliveries, failures, backoff and alarms",
        "GET", "/v1/status", _status, render_status, json_output=True,
    ),
    Command("alarms", "show the active alarms", "GET", "/v1/alarms", _alarms, render_alarms, json_output=True),
    Command(
        "restart", "clear a sink's alarms and start its publisher again (its backlog is delivered)",
        "POST", "/v1/sinks/{sink}/restart", _restart, render_restart,
        field_help=(("sink", "the sink's name, as in the config"),),
    ),
    Command("reload", "re-read the config file (a bad file changes nothing)", "POST", "/v1/reload", _reload, render_reload),
    Command(
        "schema", "the event schema document (?format=openapi|swagger)",
        "GET", "/v1/schema", _schema, render_raw, in_ctl=False, query=("format",),
    ),
    Command(
        "openapi", "this control API as an OpenAPI 3 document (docs/control-api.md)",
        "GET", "/v1/openapi.json", _openapi, render_raw, in_ctl=False,
    ),
)


def command_named(name: str) -> Command | None:
    return next((c for c in COMMANDS if c.name == name), None)


# ------------------------------------------------------------ client envelope and exit codes


@dataclass(frozen=True)
class Reply:
    """What the agent answered to one command: HTTP status and decoded JSON body."""

    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> str:
        """The agent's one-sentence reason (for a non-2xx answer)."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), str):
            return self.body["error"]
        return f"the agent answered HTTP {self.status}"

    @property
    def problems(self) -> list[str]:
        if isinstance(self.body, dict) and isinstance(self.body.get("problems"), list):
            return [str(p) for p in self.body["problems"]]
        return []


class Unreachable(Exception):
    """No agent answers on the control socket (not running, no socket, no permission)."""


class UsageError(Exception):
    """The operator's command line or environment cannot be used (bad --config, ...)."""


def exit_code(outcome: Reply | BaseException) -> int:
    """The one mapping from an outcome to eventsinkctl's exit code."""
    if isinstance(outcome, Reply):
        return EXIT_OK if outcome.ok else EXIT_FAILED
    if isinstance(outcome, Unreachable):
        return EXIT_UNREACHABLE
    if isinstance(outcome, UsageError):
        return EXIT_USAGE
    return EXIT_FAILED

"""The control commands, one unit each (circus style), and the two places
where both ends of the control socket agree.

A `Command` says everything about one operator command: its name and help, the
fields it needs, its HTTP method and path, the work it does on the
supervisor's main loop (`execute(supervisor, params) -> result`; the control
server's thread only hands it over with `action`, via `supervisor.request`)
and how `eventsinkctl` renders the answer. The server's route table
(agent/control.py) and `eventsinkctl`'s subcommands (agent/ctl.py) are both
built from `COMMANDS`; `LOOP_COMMANDS` adds the ones only signals and the
agent itself give (shutdown).

Client side: every answer becomes one `Reply` envelope, and `exit_code` is the
one mapping from outcomes to exit codes (0 ok, 1 the agent refused or failed,
2 usage error, 3 agent not running / socket unreachable).
"""

from __future__ import annotations

import importlib
import logging
import re
import sqlite3
import urllib.parse
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from common import config as config_mod
from common import logs
from common.config import ConfigError, redact_url
from common.logs import SUPPORT
from agent.errors import CommandError
from agent.reload import ReloadPlan, plan_reload
from agent.render import alarm_names as _alarm_names
from agent.render import cell as _cell
from agent.render import format_seconds, format_time, table
from agent.render import total as _total
from alarms.registry import iso_utc

log = logging.getLogger("agent.supervisor")
support = logging.getLogger(SUPPORT)

SUPERVISOR_TIMEOUT = 10.0  # s the server waits for the supervisor's answer before 503
SCHEMA_FORMATS = ("openapi", "swagger")

EXIT_OK = 0
EXIT_FAILED = 1  # the agent answered: it refused (4xx) or failed (5xx)
EXIT_USAGE = 2  # the operator's command line (argparse uses 2 as well)
EXIT_UNREACHABLE = 3  # no agent to talk to

__all__ = ["format_seconds", "format_time", "table"]  # re-exported for eventsinkctl and tests


# ------------------------------------------------------------ the unit


@dataclass(frozen=True)
class Command:
    """One control command: its route, its work on the main loop, its client rendering."""

    name: str
    help: str
    method: str  # "" with path "": not on the control socket (signals, the agent itself)
    path: str  # template; "{field}" segments are required fields taken from the path
    execute: Callable[[Any, dict[str, Any]], Any] | None  # on the supervisor's main loop
    render: Callable[[Any], str]
    json_output: bool = False  # eventsinkctl offers --json
    in_ctl: bool = True  # eventsinkctl offers this command
    query: tuple[str, ...] = ()  # optional fields taken from the query string
    field_help: tuple[tuple[str, str], ...] = ()
    serve: Callable[[Any, dict[str, str]], Any] | None = None  # answered on the server thread instead
    refused_while_stopping: bool = False  # 503 once a graceful stop has begun

    def action(self, supervisor: Any, params: dict[str, str]) -> Any:
        """The server side of a request: hand it to the main loop and wait (or answer it here)."""
        if self.serve is not None:
            return self.serve(supervisor, params)
        return ask(supervisor, self.name, **params)

    def run(self, supervisor: Any, params: dict[str, Any]) -> Any:
        """Carry the command out on the main loop."""
        if self.refused_while_stopping and supervisor.stopping:
            raise CommandError(503, "the agent is stopping")
        return self.execute(supervisor, params)

    def carry_out(self, supervisor: Any, params: dict[str, Any], future: Any) -> None:
        """Run on the main loop and deliver the outcome: to FUTURE, or (from a signal, no future) to the log."""
        try:
            outcome, failed = self.run(supervisor, params), False
        except CommandError as exc:
            outcome, failed = exc, True
        except Exception as exc:
            log.exception("BUG: command %s failed", self.name)
            outcome, failed = CommandError(500, f"internal error in {self.name}: {type(exc).__name__}"), True
        if future is not None:
            (future.set_exception if failed else future.set_result)(outcome)
            return
        origin = params.get("why", self.name)
        if not failed:
            log.info("%s: %s", origin, outcome)
            return
        for line in outcome.problems:
            log.error("%s: %s", origin, line)
        log.error("%s: %s", origin, outcome.message)

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


# ------------------------------------------------------------ status


def status(supervisor: Any, params: dict[str, Any]) -> dict:
    node, broker = supervisor.config.node, supervisor.fleet.broker
    return {
        "node": {"address": node.address, "location": node.location, "role": node.role},
        "sinks": [sink_status(supervisor, child) for child in supervisor.fleet.sinks.values()],
        "bus": {
            "received": broker.received,
            "rejected": broker.rejected,
            "journal_bytes": broker.journal_bytes,
            "journal_full": broker.journal_full,
            "broker_pid": broker.pid,
            "broker_restarts": broker.restarts,
            "state": broker.state.value,
        },
    }


def sink_status(supervisor: Any, child: Any) -> dict:
    totals = child.totals()
    return {
        "name": child.name,
        "url": redact_url(child.config.url),
        "version": child.config.version,
        "state": child.state.value,
        "pid": child.pid,
        "backlog": child.backlog,
        "in_flight": child.in_flight,
        "delivered": totals.delivered,
        "failures": totals.failures,
        "current_backoff": child.current_backoff,
        "last_attempted_restart": child.last_attempted_restart,
        "alarms": [a.name for a in supervisor.alarms.for_sink(child.name)],
        "restarts": child.restarts,
    }


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


STATUS = Command(
    "status", "show each sink's state, backlog, deliveries, failures, backoff and alarms",
    "GET", "/v1/status", status, render_status, json_output=True,
)


# ------------------------------------------------------------ alarms


def alarms(supervisor: Any, params: dict[str, Any]) -> list:
    return [a.as_dict() for a in supervisor.alarms.active()]


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


ALARMS = Command("alarms", "show the active alarms", "GET", "/v1/alarms", alarms, render_alarms, json_output=True)


# ------------------------------------------------------------ restart


def restart(supervisor: Any, params: dict[str, Any]) -> dict:
    """Clear the sink's alarms and give it a fresh worker (eventsink_started at seq 1)."""
    sink = str(params.get("sink", ""))
    child = supervisor.fleet.sinks.get(sink)
    if child is None:
        raise CommandError(404, f"no sink named {sink[:64]!r} runs on this node")
    for alarm in supervisor.alarms.clear_sink(sink):
        support.warning("alarm cleared: %s for sink %s (restart requested)", alarm.name, sink)
    child.last_attempted_restart = iso_utc(supervisor.clock.wall())
    supervisor.fleet.restart(child, supervisor.clock.monotonic())
    return {"restarted": sink}


def render_restart(body: Any) -> str:
    name = body.get("restarted") if isinstance(body, dict) else None
    return f"restarted sink {name}" if name else "restarted"


RESTART = Command(
    "restart", "clear a sink's alarms and start its publisher again (its backlog is delivered)",
    "POST", "/v1/sinks/{sink}/restart", restart, render_restart,
    field_help=(("sink", "the sink's name, as in the config"),), refused_while_stopping=True,
)


# ------------------------------------------------------------ reload


def reload(supervisor: Any, params: dict[str, Any]) -> dict:
    """Re-read the config file and apply the difference; a bad file changes nothing."""
    plan = _plan(supervisor)
    fleet, now = supervisor.fleet, supervisor.clock.monotonic()
    supervisor.config = plan.config
    logs.add_secrets(logs.config_secrets(plan.config))
    for name in plan.removed:
        supervisor.alarms.clear_sink(name)
        fleet.remove(name, now)
    for name in plan.added:
        fleet.add(plan.config.sink_named(name), now)
    for name, digest in plan.digests.items():
        fleet.sinks[name].wanted_digest = digest
    for name in plan.changed:
        child = fleet.sinks[name]
        child.config = plan.config.sink_named(name)
        supervisor.publishers.send_update(child, announce=True)
    for name in plan.quiet_updates:
        supervisor.publishers.send_update(fleet.sinks[name], announce=False)
    fleet.drop_stale_cursors()
    log.info("config reloaded: added %s, changed %s, removed %s", plan.added or "-", plan.changed or "-", plan.removed or "-")
    return plan.reply()


def _plan(supervisor: Any) -> ReloadPlan:
    """The complete plan (rotated credentials included), or CommandError with nothing changed."""
    path = supervisor.config_path
    result = config_mod.load(path)
    if result.problems or result.config is None:
        lines = [p.render(path) for p in result.problems]
        raise CommandError(400, f"config not reloaded: {len(lines)} problem(s)", lines)
    given = {name: child.given_digest for name, child in supervisor.fleet.sinks.items()}
    try:
        plan = plan_reload(supervisor.config, result.config, given)
        for name in plan.added:
            supervisor.fleet.journal.ensure_cursor(name)
    except ConfigError as exc:
        lines = [p.render(path) for p in exc.problems]
        raise CommandError(400, f"config not reloaded: {len(lines)} problem(s)", lines) from None
    except sqlite3.Error as exc:
        raise CommandError(500, f"config not reloaded: the journal refused a new cursor: {exc}") from None
    for w in result.warnings:
        log.warning("reload: %s", w.render(path))
    for key in plan.needs_restart:
        log.warning("reload: %s changed; it applies only after the agent is restarted (keeping the running value)", key)
    return plan


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


RELOAD = Command(
    "reload", "re-read the config file (a bad file changes nothing)", "POST", "/v1/reload", reload, render_reload,
    refused_while_stopping=True,
)


# ------------------------------------------------------------ schema (answered on the server thread)


class RawJSON(str):
    """An action result that already is a JSON document: sent as it is."""


def schema(supervisor: Any, params: dict[str, str]) -> RawJSON:
    fmt = params.get("format") or "openapi"
    if fmt not in SCHEMA_FORMATS:
        raise CommandError(400, f"unknown schema format {fmt[:40]!r}: use {' or '.join(SCHEMA_FORMATS)}")
    module = load_schema_module()
    if module is None:
        raise CommandError(501, "this build of the agent has no event schema")
    return RawJSON(module.render(fmt))


def load_schema_module() -> Any:
    """bus.schema, imported on first use; None when this build does not have it."""
    try:
        return importlib.import_module("bus.schema")
    except ModuleNotFoundError as exc:
        if exc.name not in ("bus.schema", "bus"):
            raise
        return None


def render_raw(body: Any) -> str:
    return body if isinstance(body, str) else str(body)


SCHEMA = Command(
    "schema", "the event schema document (?format=openapi|swagger)",
    "GET", "/v1/schema", None, render_raw, in_ctl=False, query=("format",),
    serve=schema,
)


# ------------------------------------------------------------ openapi (answered on the server thread)


def openapi(supervisor: Any, params: dict[str, str]) -> Any:
    # Imported here: the document is built from COMMANDS, so agent.openapi imports this module.
    from agent.openapi import openapi_document

    return openapi_document()


OPENAPI = Command(
    "openapi", "this control API as an OpenAPI 3 document (docs/control-api.md)",
    "GET", "/v1/openapi.json", None, render_raw, in_ctl=False, serve=openapi,
)


# ------------------------------------------------------------ shutdown (SIGTERM, SIGINT, the agent itself)


def shutdown(supervisor: Any, params: dict[str, Any]) -> dict:
    supervisor.begin_stop(str(params.get("why") or "shutdown requested"))
    return {"stopping": True}


SHUTDOWN = Command("shutdown", "stop gracefully: workers first, then the broker", "", "", shutdown, render_raw, in_ctl=False)


# ------------------------------------------------------------ the registry

COMMANDS: tuple[Command, ...] = (STATUS, ALARMS, RESTART, RELOAD, SCHEMA, OPENAPI)  # on the control socket
LOOP_COMMANDS: tuple[Command, ...] = COMMANDS + (SHUTDOWN,)  # what supervisor.request accepts


def command_named(name: str) -> Command | None:
    return next((c for c in LOOP_COMMANDS if c.name == name), None)


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

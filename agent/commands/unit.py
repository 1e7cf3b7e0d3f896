"""The unit every control command is (circus style): `Command`, and how the
control server hands one to the supervisor's main loop (`ask`).

A `Command` says everything about one operator command: its name and help,
its HTTP method and path (path fields), its optional query fields and JSON
body (a msgspec Struct type, decoded and checked by the control server), the
work it does on the supervisor's main loop (`execute(supervisor, params) ->
result`), how `eventsinkctl` offers it (`cli`: its options beyond the path
fields) and how it renders the answer. The server's route table
(agent/control.py), `eventsinkctl`'s subcommands (agent/ctl.py) and the
OpenAPI document (agent/openapi.py) are all built from these units.

A command whose answer comes later (from a worker, say) returns a
`concurrent.futures.Future` from `execute`; `carry_out` passes its outcome on.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from agent.errors import CommandError

log = logging.getLogger("agent.supervisor")

SUPERVISOR_TIMEOUT = 10.0  # s the server waits for the supervisor's answer before 503
CALLER_UID = "caller_uid"  # params key: the uid of the control socket's client (SO_PEERCRED)
BODY = "body"  # params key: the decoded request body (an instance of Command.body)


class RawJSON(str):
    """An action result that already is a JSON document: sent as it is."""


@dataclass(frozen=True)
class CliArg:
    """One eventsinkctl option of a command, beyond its path fields.

    FLAGS are argparse's (`("--since",)`, or `("ids",)` for a positional); the
    value goes to the request's query string or JSON body under FIELD, through
    CONVERT first when given (on the client: an age such as `2h` becomes Unix
    seconds there). KWARGS are argparse's (help, type, nargs, action, ...)."""

    flags: tuple[str, ...]
    field: str
    to: str  # "query" or "body"
    kwargs: dict[str, Any] = field(default_factory=dict)
    convert: Callable[[Any], Any] | None = None
    omit_default: bool = True  # leave the field out of the request while it has argparse's default


@dataclass(frozen=True)
class Command:
    """One control command: its route, its work on the main loop, its client rendering."""

    name: str
    help: str
    method: str  # "" with path "": not on the control socket (signals, the agent itself)
    path: str  # template; "{field}" segments are required fields taken from the path
    execute: Callable[[Any, dict[str, Any]], Any] | None  # on the supervisor's main loop
    render: Callable[[Any], str]
    in_ctl: bool = True  # eventsinkctl offers this command
    query: tuple[str, ...] = ()  # optional fields taken from the query string
    body: type | None = None  # msgspec Struct of the JSON body it reads (None: it reads none)
    field_help: tuple[tuple[str, str], ...] = ()
    cli: tuple[CliArg, ...] = ()
    serve: Callable[[Any, dict[str, str]], Any] | None = None  # answered on the server thread instead
    refused_while_stopping: bool = False  # 503 once a graceful stop has begun
    wants_caller: bool = False  # the control server adds the client's uid (params[CALLER_UID])
    media_type: str = "application/json"  # of its success answer ("application/x-ndjson": a stream)

    def action(self, supervisor: Any, params: dict[str, Any]) -> Any:
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
        if isinstance(outcome, Future):  # answered later (a worker's reply)
            outcome.add_done_callback(lambda done: self._deliver_later(done, params, future))
            return
        self._deliver(outcome, failed, params, future)

    def _deliver_later(self, done: Future, params: dict[str, Any], future: Any) -> None:
        error = done.exception() if not done.cancelled() else CommandError(503, "the answer was withdrawn")
        if error is not None and not isinstance(error, CommandError):
            log.error("BUG: command %s failed later: %s: %s", self.name, type(error).__name__, error)
            error = CommandError(500, f"internal error in {self.name}: {type(error).__name__}")
        self._deliver(error if error is not None else done.result(), error is not None, params, future)

    def _deliver(self, outcome: Any, failed: bool, params: dict[str, Any], future: Any) -> None:
        if future is not None:
            if not future.done():  # the server may have given up on it (503)
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

    def request_path(self, params: dict[str, str], query: dict[str, Any] | None = None) -> str:
        """The path for a request, each field percent-encoded as one segment, then the query string.

        A field from a command line that is not UTF-8 (surrogate escapes) goes as its raw bytes:
        the agent then answers it (e.g. 404 unknown sink) instead of the client raising."""
        path = re.sub(
            r"\{(\w+)\}", lambda m: urllib.parse.quote(params[m.group(1)], safe="", errors="surrogateescape"), self.path
        )
        if query:
            path += "?" + urllib.parse.urlencode({k: str(v) for k, v in query.items()})
        return path


def ask(supervisor: Any, command: str, **params: Any) -> Any:
    """Send one request to the supervisor and wait for its answer (503 after SUPERVISOR_TIMEOUT)."""
    future = supervisor.request(command, **params)
    try:
        return future.result(timeout=SUPERVISOR_TIMEOUT)
    except FutureTimeout:
        future.cancel()
        raise CommandError(503, f"the agent did not answer within {SUPERVISOR_TIMEOUT:g} s; try again") from None


def sink_child(supervisor: Any, params: dict[str, Any]) -> Any:
    """The SinkChild named by the `sink` field, or CommandError 404."""
    sink = str(params.get("sink", ""))
    child = supervisor.fleet.sinks.get(sink)
    if child is None:
        raise CommandError(404, f"no sink named {sink[:64]!r} runs on this node")
    return child

"""The server side of a control command: `Action`, and how the control server
hands one to the supervisor's main loop (`ask`).

An `Action` carries out one `Command` (agent/commands/unit.py, its
description): the work it does on the supervisor's main loop
(`execute(supervisor, params) -> result`), or on the control server's thread
instead (`serve`, for what needs nothing of the main loop), the msgspec Struct
its JSON body is decoded and checked as, and when the server refuses it
(docs/control-api.md). Only the agent imports actions; `eventsinkctl` never does.

A command whose answer comes later (from a worker, say) returns a
`concurrent.futures.Future` from `execute`; `carry_out` passes its outcome on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from agent.client.errors import CommandError
from agent.commands.unit import Command

log = logging.getLogger("agent.supervisor")

SUPERVISOR_TIMEOUT = 10.0  # s the server waits for the supervisor's answer before 503
CALLER_UID = "caller_uid"  # params key: the uid of the control socket's client (SO_PEERCRED)
BODY = "body"  # params key: the decoded request body (an instance of Action.body)


class RawJSON(str):
    """An action result that already is a JSON document: sent as it is."""


@dataclass(frozen=True)
class Action:
    """How the agent carries out COMMAND: on its main loop (`execute`) or on the server's thread (`serve`)."""

    command: Command
    execute: Callable[[Any, dict[str, Any]], Any] | None = None  # on the supervisor's main loop
    serve: Callable[[Any, dict[str, str]], Any] | None = None  # answered on the server thread instead
    body: type | None = None  # msgspec Struct of the JSON body (exactly when command.body)
    refused_while_stopping: bool = False  # 503 once a graceful stop has begun
    wants_caller: bool = False  # the control server adds the client's uid (params[CALLER_UID])

    @property
    def name(self) -> str:
        return self.command.name

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

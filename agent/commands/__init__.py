"""The control commands as both ends of the control socket see them: one
description each (circus style), and the registry `eventsinkctl`, the control
server and the OpenAPI document are built from (docs/control-api.md,
docs/commands.md).

Every command is two small units with the same module name:

- `agent/commands/NAME.py`, its description (client-visible): a `Command`
  (unit.py) with its name, help, method and path (`{field}` segments), its
  query fields, whether it reads a JSON body, its `CliArg`s, and its renderer,
  plus whatever the client needs to check a value before sending it. It may
  import the standard library, agent/render.py, agent/commands/ and the light
  helpers of common/ (timespec, vocabulary) only: `eventsinkctl` imports every
  description, and tests/agent/test_ctl_imports.py fails when one pulls in
  zmq, pycurl, sqlite3, msgspec or http.client. Nor typing or dataclasses,
  for start-up's sake: annotations name `Any` under `TYPE_CHECKING = False`.
- `agent/actions/NAME.py`, its action (server side): an `Action` holding the
  description and its `execute(supervisor, params)` on the main loop (or
  `serve` on the control server's thread), its msgspec body type, and the
  server's rules for it (`refused_while_stopping`, `wants_caller`). It imports
  what the work needs (child, journal, reports, ...); only the agent imports it.

To add a command: write both modules, add the description to `COMMANDS` below
(or to `LOOP_COMMANDS` only, if it is not on the socket) and the action to
`ACTIONS` in agent/actions/__init__.py, give it a response schema in
agent/openapi.py, and run `make docs`. tests/agent/test_command_units.py checks
that every description has exactly one action and that the two agree on the body.

A command written as one unit, the way they were before this split
(`Command(name, help, method, path, execute, render, body=Struct, ...)`), fails
at import with a TypeError (everything after the path is keyword-only): keep
its name, help, route, `cli` and renderer here (`render=...`, `body=True`),
and move `execute`/`serve`, the body Struct, `refused_while_stopping` and
`wants_caller`, with the imports they need, to its action.

`client.py` is the client's envelope and exit codes.
"""

from __future__ import annotations

from agent.commands.alarms import ALARMS
from agent.commands.attempts import ATTEMPTS
from agent.commands.config_view import CONFIG
from agent.commands.deliveries import DELIVERIES, FOLLOW
from agent.commands.client import (
    EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, BadValue, Reply, Unreachable, UsageError, exit_code,
)
from agent.commands.dead_letters import DEAD_LETTERS, DISCARD, REDRIVE
from agent.commands.openapi_doc import OPENAPI
from agent.commands.reload import RELOAD
from agent.commands.replay import REPLAY
from agent.commands.restart import RESTART
from agent.commands.schema import SCHEMA
from agent.commands.shutdown import SHUTDOWN
from agent.commands.status import STATUS, STATUS_COLUMNS, render_status
from agent.commands.unit import CliArg, Command, render_raw

COMMANDS: tuple[Command, ...] = (
    STATUS, ALARMS, RESTART, RELOAD, REPLAY, ATTEMPTS, DELIVERIES, FOLLOW, DEAD_LETTERS, REDRIVE, DISCARD, SCHEMA,
    OPENAPI, CONFIG,
)  # on the control socket, in the order `eventsinkctl --help` lists them
LOOP_COMMANDS: tuple[Command, ...] = COMMANDS + (SHUTDOWN,)  # what the supervisor accepts (signals give shutdown)


def command_named(name: str) -> Command | None:
    return next((c for c in LOOP_COMMANDS if c.name == name), None)


__all__ = [
    "ALARMS", "ATTEMPTS", "COMMANDS", "CONFIG", "DEAD_LETTERS", "DELIVERIES", "DISCARD", "EXIT_FAILED", "EXIT_OK",
    "EXIT_UNREACHABLE", "EXIT_USAGE", "FOLLOW", "LOOP_COMMANDS", "OPENAPI", "REDRIVE", "RELOAD", "REPLAY", "RESTART",
    "SCHEMA", "SHUTDOWN", "STATUS", "STATUS_COLUMNS", "BadValue", "CliArg", "Command", "Reply", "Unreachable",
    "UsageError", "command_named", "exit_code", "render_raw", "render_status",
]

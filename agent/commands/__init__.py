"""The control commands as both ends of the control socket see them: one
description each (circus style), and the registry `eventsinkctl`, the control
server and the OpenAPI document are built from (docs/control-api.md,
docs/commands.md).

Every command is two small units with the same module name:

- `agent/commands/NAME.py`, its description (client-visible): a `Command`
  (unit.py) with its name, help, method and path (`{field}` segments), its
  query fields, whether it reads a JSON body, its `CliArg`s, and its renderer,
  plus whatever the client needs to check a value before sending it. It may
  import the standard library, agent/client/render.py, agent/commands/ and the light
  helpers of common/ (timespec, vocabulary) only: `eventsinkctl` imports any
  description, and tests/agent/test_ctl_imports.py fails when one pulls in
  zmq, pycurl, sqlite3, msgspec or http.client. Nor typing or dataclasses,
  for start-up's sake: annotations name `Any` under `TYPE_CHECKING = False`.
- `agent/server/actions/NAME.py`, its action (server side): an `Action` holding the
  description and its `execute(supervisor, params)` on the main loop (or
  `serve` on the control server's thread), its msgspec body type, and the
  server's rules for it (`refused_while_stopping`, `wants_caller`). It imports
  what the work needs (child, journal, reports, ...); only the agent imports it.

To add a command: write both modules, add the description to `COMMANDS` in
agent/commands/registry.py (or to `LOOP_COMMANDS` only, if it is not on the
socket) and, when `eventsinkctl` offers it, to `CTL_UNITS` below, the action to
`ACTIONS` in agent/server/actions/registry.py, give it a response schema in
agent/server/openapi.py, and run `make docs`. tests/agent/test_command_units.py checks
that every description has exactly one action and that the two agree on the body.

A command written as one unit, the way they were before this split
(`Command(name, help, method, path, execute, render, body=Struct, ...)`), fails
at import with a TypeError (everything after the path is keyword-only): keep
its name, help, route, `cli` and renderer here (`render=...`, `body=True`),
and move `execute`/`serve`, the body Struct, `refused_while_stopping` and
`wants_caller`, with the imports they need, to its action.

`client.py` is the client's envelope and exit codes.

This package's own module names only where each of `eventsinkctl`'s
subcommands is described, so that a plain `eventsinkctl status` imports that
one description (agent/client/ctl.py), not the registry and every description;
tests/agent/test_ctl.py checks that it names each one the registry offers.
"""

from __future__ import annotations

# eventsinkctl's subcommand -> "module:NAME" of its description in this package (agent/client/ctl.py)
CTL_UNITS = {
    "status": "status:STATUS",
    "alarms": "alarms:ALARMS",
    "restart": "restart:RESTART",
    "reload": "reload:RELOAD",
    "replay": "replay:REPLAY",
    "attempts": "attempts:ATTEMPTS",
    "deliveries": "deliveries:DELIVERIES",
    "dead-letters": "dead_letters:DEAD_LETTERS",
    "redrive": "dead_letters:REDRIVE",
    "discard": "dead_letters:DISCARD",
}

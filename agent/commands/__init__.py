"""The control commands: one unit each (circus style), one module each, and
the registry both ends of the control socket are built from.

`unit.py` is the `Command` unit; `client.py` the client's envelope and exit
codes; every other module here is one command (or one small family, such as
the dead letters'). `COMMANDS` are the ones on the control socket, in the
order `eventsinkctl --help` lists them; `LOOP_COMMANDS` adds the ones only
signals and the agent itself give (shutdown).
"""

from __future__ import annotations

from agent.commands.alarms import ALARMS
from agent.commands.dead_letters import DEAD_LETTERS, DISCARD, REDRIVE
from agent.commands.attempts import ATTEMPTS
from agent.commands.config_view import CONFIG
from agent.commands.deliveries import DELIVERIES, FOLLOW
from agent.commands.client import (
    EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, BadValue, Reply, Unreachable, UsageError, exit_code,
)
from agent.commands.openapi_doc import OPENAPI
from agent.commands.reload import RELOAD
from agent.commands.replay import REPLAY
from agent.commands.restart import RESTART
from agent.commands.schema import SCHEMA
from agent.commands.shutdown import SHUTDOWN
from agent.commands.status import STATUS, STATUS_COLUMNS, render_status
from agent.commands.unit import BODY, CALLER_UID, CliArg, Command, RawJSON, ask
from agent.render import format_seconds, format_time, table
from common.vocabulary import SCHEMA_FORMATS

COMMANDS: tuple[Command, ...] = (
    STATUS, ALARMS, RESTART, RELOAD, REPLAY, ATTEMPTS, DELIVERIES, FOLLOW, DEAD_LETTERS, REDRIVE, DISCARD, SCHEMA,
    OPENAPI, CONFIG,
)  # on the control socket
LOOP_COMMANDS: tuple[Command, ...] = COMMANDS + (SHUTDOWN,)  # what supervisor.request accepts


def command_named(name: str) -> Command | None:
    return next((c for c in LOOP_COMMANDS if c.name == name), None)


__all__ = [
    "ALARMS", "ATTEMPTS", "BODY", "CALLER_UID", "COMMANDS", "CONFIG", "DEAD_LETTERS", "DELIVERIES", "DISCARD", "FOLLOW",
    "EXIT_FAILED", "EXIT_OK",
    "EXIT_UNREACHABLE", "EXIT_USAGE", "LOOP_COMMANDS", "OPENAPI", "REDRIVE", "RELOAD", "REPLAY", "RESTART", "SCHEMA",
    "SCHEMA_FORMATS", "SHUTDOWN", "STATUS",
    "STATUS_COLUMNS", "BadValue", "CliArg", "Command", "RawJSON", "Reply", "Unreachable", "UsageError", "ask",
    "command_named", "exit_code", "format_seconds", "format_time", "render_status", "table",
]

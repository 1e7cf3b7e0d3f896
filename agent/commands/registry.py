"""The registry of the control commands' descriptions (agent/commands/, where
the pattern is told): COMMANDS on the control socket, in the order
`eventsinkctl --help` lists them, LOOP_COMMANDS the supervisor accepts, a
command by name. The client's envelope and exit codes are agent/commands/client.py's.
"""

from __future__ import annotations

from agent.commands.alarms import ALARMS
from agent.commands.attempts import ATTEMPTS
from agent.commands.config_view import CONFIG
from agent.commands.dead_letters import DEAD_LETTERS, DISCARD, REDRIVE
from agent.commands.deliveries import DELIVERIES, FOLLOW
from agent.commands.openapi_doc import OPENAPI
from agent.commands.reload import RELOAD
from agent.commands.replay import REPLAY
from agent.commands.restart import RESTART
from agent.commands.schema import SCHEMA
from agent.commands.shutdown import SHUTDOWN
from agent.commands.status import STATUS
from agent.commands.unit import Command

COMMANDS: tuple[Command, ...] = (
    STATUS,
    ALARMS,
    RESTART,
    RELOAD,
    REPLAY,
    ATTEMPTS,
    DELIVERIES,
    FOLLOW,
    DEAD_LETTERS,
    REDRIVE,
    DISCARD,
    SCHEMA,
    OPENAPI,
    CONFIG,
)  # on the control socket, in the order `eventsinkctl --help` lists them
LOOP_COMMANDS: tuple[Command, ...] = COMMANDS + (SHUTDOWN,)  # what the supervisor accepts (signals give shutdown)


def command_named(name: str) -> Command | None:
    return next((c for c in LOOP_COMMANDS if c.name == name), None)


__all__ = [
    "ALARMS",
    "ATTEMPTS",
    "COMMANDS",
    "CONFIG",
    "DEAD_LETTERS",
    "DELIVERIES",
    "DISCARD",
    "FOLLOW",
    "LOOP_COMMANDS",
    "OPENAPI",
    "REDRIVE",
    "RELOAD",
    "REPLAY",
    "RESTART",
    "SCHEMA",
    "SHUTDOWN",
    "STATUS",
    "command_named",
]

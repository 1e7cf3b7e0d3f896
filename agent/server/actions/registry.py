"""The registry of the control commands' actions (agent/server/actions/): ACTIONS, an
action by name or by command, and the `openapi` action, whose document
(agent/server/openapi.py) is built from this registry and so is defined here.
Imported by the control server and the supervisor; never by `eventsinkctl`
(docs/control-api.md).
"""

from __future__ import annotations

from typing import Any

from agent.commands import openapi_doc as openapi_command
from agent.commands.registry import LOOP_COMMANDS
from agent.commands.unit import Command
from agent.server import openapi
from agent.server.actions.alarms import ALARMS
from agent.server.actions.attempts import ATTEMPTS
from agent.server.actions.config_view import CONFIG
from agent.server.actions.dead_letters import DEAD_LETTERS, DISCARD, REDRIVE
from agent.server.actions.deliveries import DELIVERIES, FOLLOW
from agent.server.actions.reload import RELOAD
from agent.server.actions.replay import REPLAY
from agent.server.actions.restart import RESTART
from agent.server.actions.schema import SCHEMA
from agent.server.actions.shutdown import SHUTDOWN
from agent.server.actions.status import STATUS
from agent.server.actions.unit import BODY, CALLER_UID, Action, RawJSON, ask


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every command in COMMANDS, with the bodies their actions take."""
    return openapi.document_of(ACTIONS)


def serve_openapi(supervisor: Any, params: dict[str, str]) -> Any:
    """`openapi`, answered on the server's thread (docs/control-api.md)."""
    return openapi_document()


OPENAPI = Action(openapi_command.OPENAPI, serve=serve_openapi)

ACTIONS: tuple[Action, ...] = (
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
    SHUTDOWN,
)
_BY_NAME = {a.name: a for a in ACTIONS}


def action_named(name: str) -> Action | None:
    return _BY_NAME.get(name)


def action_of(command: Command) -> Action:
    """COMMAND's action (every command in LOOP_COMMANDS has one: tests/agent/test_command_units.py)."""
    return _BY_NAME[command.name]


def unpaired() -> list[str]:
    """The names of commands without an action, actions without a command, and bodies the two disagree on."""
    described = {c.name: c for c in LOOP_COMMANDS}
    out = [f"no action for {name}" for name in described if name not in _BY_NAME]
    out += [f"no command for action {name}" for name in _BY_NAME if name not in described]
    out += [
        f"{a.name}: the command and its action disagree on a body"
        for a in ACTIONS
        if a.name in described and described[a.name].body != (a.body is not None)
    ]
    out += [
        f"{a.name}: the action is not for the registered command"
        for a in ACTIONS
        if a.name in described and a.command is not described[a.name]
    ]
    return out


__all__ = [
    "ACTIONS",
    "ALARMS",
    "ATTEMPTS",
    "BODY",
    "CALLER_UID",
    "CONFIG",
    "DEAD_LETTERS",
    "DELIVERIES",
    "DISCARD",
    "FOLLOW",
    "OPENAPI",
    "REDRIVE",
    "RELOAD",
    "REPLAY",
    "RESTART",
    "SCHEMA",
    "SHUTDOWN",
    "STATUS",
    "Action",
    "RawJSON",
    "action_named",
    "action_of",
    "ask",
    "openapi_document",
    "unpaired",
]

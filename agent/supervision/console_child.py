"""The console (docs/console.md) as a child of the supervisor: a process started only
while `[console] listen` is set, restarted after a crash with the same backoff
policy as every child, restarted when a reload changes its settings, and shut
down when a reload clears `listen` or the agent stops.

The console gets its spec on stdin like every child, but only what it needs: its
`[console]` section, the control socket's path and the node's name; never a
sink's secret (it has none to leak)."""

from __future__ import annotations

import sys

import msgspec

from agent.supervision.child import Child
from agent.supervision.states import ChildState
from common.config_types import Config, ConsoleConfig

S = ChildState
CONSOLE_ARGV = [sys.executable, "-m", "console"]


class ConsoleChild(Child):
    argv = CONSOLE_ARGV
    label = "console"

    def __init__(self, settings: ConsoleConfig):
        super().__init__("console")
        self.settings = settings

    def spawn(self, launcher, spec: bytes, now: float, *, automatic: bool) -> None:
        super().spawn(launcher, spec, now, automatic=automatic)
        # It sends no reports: running once started (a crash moves it to CRASHED and back).
        self.change_state(S.RUNNING, "serving", now)


def console_spec(config: Config) -> bytes:
    """What the console process reads on stdin (console/app.py's ConsoleSpec)."""
    node = config.node
    return msgspec.json.encode(
        {
            "console": config.console,
            "control_socket": config.agent.control_socket,
            "node": f"{node.address} ({node.location})",
        }
    )


def wanted(config: Config) -> ConsoleConfig | None:
    """The console settings to run with, or None when `listen` is not set."""
    return config.console if config.console.listen else None

"""`reload`: re-read the config file and apply the difference; a bad file
changes nothing (docs/control-api.md, `POST /v1/reload`; SIGHUP runs it too).
Its work is agent/server/actions/reload.py."""

from __future__ import annotations

from agent.client.render import cell as _cell
from agent.commands.unit import Command

TYPE_CHECKING = False  # typing only for type checkers: eventsinkctl starts without it (agent/commands/__init__.py)
if TYPE_CHECKING:
    from typing import Any


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
    "reload", "re-read the config file (a bad file changes nothing)", "POST", "/v1/reload", render=render_reload
)

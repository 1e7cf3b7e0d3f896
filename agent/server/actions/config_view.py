"""`config` on the control server's thread: it reads the config file and needs
nothing of the main loop (docs/console.md, `GET /v1/config`)."""

from __future__ import annotations

from typing import Any

import msgspec

from agent.commands import config_view as command
from agent.server.actions.unit import Action
from common import config as config_mod
from common.config_types import SECRET_KEYS, Config, redact_url

MASK = "***"


def masked(config: Config) -> dict:
    """CONFIG as TOML-shaped builtins, every secret (and a secret file's or key's path) as ***."""
    doc = msgspec.to_builtins(config)
    for sink in doc.get("sink", []):
        sink.pop("bearer_token", None)  # resolved from a file, never a key of the file
        for key, value in list(sink.items()):
            if key == "url":
                sink[key] = redact_url(value)
            elif key == "headers":
                sink[key] = {name: MASK for name in value}
            elif key in SECRET_KEYS and value:
                sink[key] = MASK
    console = doc.get("console", {})
    if console.get("tls_key"):
        console["tls_key"] = MASK
    return doc


def config_view(supervisor: Any, params: dict[str, str]) -> dict:
    path = supervisor.config_path
    result = config_mod.load(path)
    return {
        "path": path,
        "running": masked(supervisor.config),
        "check": {
            "valid": not result.problems and result.config is not None,
            "problems": [p.render(path) for p in result.problems],
            "warnings": [w.render(path) for w in result.warnings],
        },
    }


CONFIG = Action(command.CONFIG, serve=config_view)

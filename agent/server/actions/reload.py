"""`reload` on the main loop: re-read the config file and apply the difference;
a bad file changes nothing (docs/control-api.md, `POST /v1/reload`; SIGHUP
runs it too). The plan itself is agent/supervision/reload.py's."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from agent.client.errors import CommandError
from agent.commands import reload as command
from agent.server.actions.unit import Action
from agent.supervision import console_child
from agent.supervision.reload import ReloadPlan, plan_reload
from common import config as config_mod
from common import logs
from common.config_types import ConfigError

log = logging.getLogger("agent.supervisor")


def reload(supervisor: Any, params: dict[str, Any]) -> dict:
    """Re-read the config file and apply the difference; a bad file changes nothing."""
    plan = _plan(supervisor)
    fleet, now = supervisor.fleet, supervisor.clock.monotonic()
    supervisor.config = plan.config
    logs.add_secrets(logs.config_secrets(plan.config))
    for name in plan.removed:
        supervisor.alarms.clear_sink(name)
        fleet.remove(name, now)
    for name in plan.added:
        fleet.add(plan.config.sink_named(name), now)
    for name, digest in plan.digests.items():
        fleet.sinks[name].wanted_digest = digest
    for name in plan.changed:
        child = fleet.sinks[name]
        child.config = plan.config.sink_named(name)
        supervisor.reports.send_update(child, announce=True)
    for name in plan.quiet_updates:
        supervisor.reports.send_update(fleet.sinks[name], announce=False)
    fleet.drop_stale_cursors()
    fleet.set_console(console_child.wanted(plan.config), now)
    log.info(
        "config reloaded: added %s, changed %s, removed %s", plan.added or "-", plan.changed or "-", plan.removed or "-"
    )
    return plan.reply()


def _plan(supervisor: Any) -> ReloadPlan:
    """The complete plan (rotated credentials included), or CommandError with nothing changed."""
    path = supervisor.config_path
    result = config_mod.load(path)
    if result.problems or result.config is None:
        lines = [p.render(path) for p in result.problems]
        raise CommandError(400, f"config not reloaded: {len(lines)} problem(s)", lines)
    given = {name: child.given_digest for name, child in supervisor.fleet.sinks.items()}
    try:
        plan = plan_reload(supervisor.config, result.config, given)
        for name in plan.added:
            supervisor.fleet.journal.ensure_cursor(name)
    except ConfigError as exc:
        lines = [p.render(path) for p in exc.problems]
        raise CommandError(400, f"config not reloaded: {len(lines)} problem(s)", lines) from None
    except sqlite3.Error as exc:
        raise CommandError(500, f"config not reloaded: the journal refused a new cursor: {exc}") from None
    for w in result.warnings:
        log.warning("reload: %s", w.render(path))
    for key in plan.needs_restart:
        log.warning("reload: %s changed; it applies only after the agent is restarted (keeping the running value)", key)
    return plan


RELOAD = Action(command.RELOAD, reload, refused_while_stopping=True)

"""What a reload changes: the difference between the running config and a newly
loaded one, as a plan the supervisor carries out.

- sinks at this node's location are compared by name: `removed`, `added`,
  `changed` (its own [[sink]] table differs: the worker gets an update and
  announces it with eventsink_updated), the rest unchanged (they still get a
  quiet update when [tuning] or [node] changed, since tuning is global);
- credentials are compared too (when the running workers' credential digests
  are given): a sink whose secret file was rotated, or whose certificate was
  renewed behind the same path, is `changed` although its table is not;
- the [agent] section (paths, endpoints, limits) cannot change live: the plan
  keeps the running values and names each key that needs an agent restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from common import config as config_mod
from common.config_types import Config
from common.http_options import credentials_digest


@dataclass
class ReloadPlan:
    config: Config  # the config to run from now on (with the old [agent] section)
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    quiet_updates: list[str] = field(default_factory=list)  # unchanged sinks told about new tuning/node
    needs_restart: list[str] = field(default_factory=list)  # "agent.KEY" that only a restart applies
    digests: dict[str, str] = field(default_factory=dict)  # sink -> credentials its worker should have

    def reply(self) -> dict:
        out: dict = {"reloaded": True, "added": self.added, "changed": self.changed, "removed": self.removed}
        if self.needs_restart:
            out["needs_restart"] = self.needs_restart
        return out


def plan_reload(old: Config, new: Config, given_digests: dict[str, str | None] | None = None) -> ReloadPlan:
    """The plan from OLD to NEW. With GIVEN_DIGESTS (sink -> the credentials digest its
    worker runs with, None if unknown) secrets are resolved (ConfigError if one cannot be)
    and rotated credentials count as a change."""
    needs_restart = [
        f"agent.{key}" for key in old.agent.__struct_fields__ if getattr(old.agent, key) != getattr(new.agent, key)
    ]
    effective = msgspec.structs.replace(new, agent=old.agent)
    before = {s.name: s for s in old.sinks_here()}
    after = {s.name: s for s in effective.sinks_here()}
    plan = ReloadPlan(effective, needs_restart=needs_restart)
    plan.removed = [n for n in before if n not in after]
    plan.added = [n for n in after if n not in before]
    globals_changed = old.tuning != effective.tuning or old.node != effective.node
    for name in after:
        if name not in before:
            continue
        if before[name] != after[name]:
            plan.changed.append(name)
        elif globals_changed:
            plan.quiet_updates.append(name)
    if given_digests is not None:
        resolved = config_mod.resolve_secrets(effective)
        plan.digests = {name: credentials_digest(resolved.sink_named(name)) for name in after}
        rotated = [
            n
            for n in after
            if n in before and n not in plan.changed and given_digests.get(n) not in (None, plan.digests[n])
        ]
        plan.changed += rotated
        plan.quiet_updates = [n for n in plan.quiet_updates if n not in rotated]
    return plan

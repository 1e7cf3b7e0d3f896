"""What a reload changes: the difference between the running config and a newly
loaded one, as a plan the supervisor carries out.

- sinks at this node's location are compared by name: `removed`, `added`,
  `changed` (its own [[sink]] table differs: the worker gets an update and
  announces it with eventsink_updated), the rest unchanged (they still get a
  quiet update when [tuning] or [node] changed, since tuning is global);
- the [agent] section (paths, endpoints, limits) cannot change live: the plan
  keeps the running values and names each key that needs an agent restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from common.config import Config


@dataclass
class ReloadPlan:
    config: Config  # the config to run from now on (with the old [agent] section)
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    quiet_updates: list[str] = field(default_factory=list)  # unchanged sinks told about new tuning/node
    needs_restart: list[str] = field(default_factory=list)  # "agent.KEY" that only a restart applies

    def reply(self) -> dict:
        out: dict = {"reloaded": True, "added": self.added, "changed": self.changed, "removed": self.removed}
        if self.needs_restart:
            out["needs_restart"] = self.needs_restart
        return out


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    needs_restart = [
        f"agent.{key}"
        for key in old.agent.__struct_fields__
        if getattr(old.agent, key) != getattr(new.agent, key)
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
    return plan

"""Where the agent's sockets are by default: `agent.runtime_dir`'s default (common/config_types.py),
which `eventsinkctl` falls back on without loading the config (docs/config.md: the control socket
is {runtime_dir}/control.sock). A module of its own so that eventsinkctl's start imports nothing
else for it (docs/commands.md: eventsinkctl)."""

DEFAULT_RUNTIME_DIR = "/run/eventsink-agent"
